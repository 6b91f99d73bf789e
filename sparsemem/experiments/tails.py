"""Experiments 4a and 4b: one FFN-free, DP-free layer learning a memory kernel, log against lin RPE.

Each trained cell sits beside its optimal-fit floor: the best MSE any H heads
of that RPE type reach on the kernel (experiments/floors.py).
"""

from __future__ import annotations

import math
from typing import Optional

from ..plotting import log_axes, plot_known, pyplot, save_figure
from .base import (
    Experiment,
    Results,
    Table,
    Verdict,
    all_of,
    diagnosis,
    fmt,
    fmt_spread,
    min_of,
    seeds_of,
    spec,
    truth_label,
)
from .floors import FloorSpec
from .outcomes import UNTESTABLE, Part, Testability, from_truth
from .rules import compared, direction, reproduces, reproduces_bound, size, solved
from .toy import T, base, cell, floor_gap, heads_1d


def kernel_spec(name: str, profile: str, kernels: list, rpes: list[str]):
    return spec(
        name,
        base(profile, {"kind": "kernel", "kernels": kernels[0]}, {"ffn_width": 0}),
        {"task.kernels": kernels, "model.rpe": rpes, "model.heads": heads_1d(profile)},
        seeds=seeds_of(profile),
    )


def kernel_floors(kernels: list[str], rpes: list[str]):
    def specs(profile: str) -> list[FloorSpec]:
        return [FloorSpec("kernel", k, rpe, max(heads_1d(profile)), T) for k in kernels for rpe in rpes]

    return specs


def kernel_table(res: Results, title: str, rpes: list[str], kernel: str, where: Optional[dict] = None) -> Table:
    """Rows H; per RPE the trained MSE (relative) and the optimal-fit floor for the same H, RPE and T."""
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    rows = [
        [H]
        + [
            v
            for rpe in rpes
            for v in (
                cell(res, {"model.rpe": rpe, "model.heads": H, **(where or {})}),
                fmt(res.floor("kernel", kernel, rpe, H)),
            )
        ]
        for H in Hs
    ]
    header = ["H"] + [h for r in rpes for h in (f"{r} RPE, trained", f"{r} RPE, floor")]
    return Table(title + "; floor: the best fit of H heads found (MSE, theory fit)", header, rows)


def kernel_figure(res: Results, path: str, panels: list[tuple[str, dict]], rpes: list[str]) -> None:
    plt = pyplot()

    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, where) in zip(axes[0], panels):
        for rpe in rpes:
            vals = [res.spread("val_rel", {"model.rpe": rpe, "model.heads": H, **where}) for H in Hs]
            plot_known(ax, Hs, vals, "o-", f"{rpe} RPE")
        log_axes(ax, "heads H", "relative MSE", title)
    save_figure(fig, path)


TAU_4A = 1e-5  # the paper's own bar for one log head; float32 training reaches 1e-7 and below here
TAU_4B = 1e-7  # the paper's own bar for one lin head at beta = 5; below the residual-only level (4b notes)


def cells(res: Results, rpe: str, where: Optional[dict] = None, metric: str = "val_rel") -> dict:
    """{H: Spread} for an RPE over the heads run."""
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    return {H: res.spread(metric, {"model.rpe": rpe, "model.heads": H, **(where or {})}) for H in Hs}


def heads_to_solve(by_h: dict, tau: float) -> Optional[int]:
    """The fewest heads whose cell is solved for every seed; None where no H is."""
    return next((H for H, c in sorted(by_h.items()) if solved(c, tau) is True), None)


def one_head_rule(res: Results, good: str, bad: str, tau: float, where: Optional[dict] = None):
    """The tail claims: one head of the `good` RPE type solves the kernel and one head of the `bad` type
    does not. Returns (truth, text, compared entries, the per-RPE cells)."""
    got = {r: cells(res, r, where) for r in (good, bad)}
    g1, b1 = got[good].get(1), got[bad].get(1)
    if g1 is None or b1 is None:
        return None, "incomplete", [], got
    truth = all_of(solved(g1, tau), b1 > tau)
    need = heads_to_solve(got[bad], tau)
    text = (
        f"{good}, 1 head: {fmt_spread(g1)}; {bad}, 1 head: {fmt_spread(b1)}; {bad} best over H: "
        f"{fmt_spread(min_of(got[bad].values()))}; {bad} solves (<= {fmt(tau)}, every seed) from "
        + (f"H = {need}" if need else "no H run")
    )
    entries = [
        compared(f"{good} H=1", g1),
        compared(f"{bad} H=1", b1),
        compared(f"{bad} best", min_of(got[bad].values())),
    ]
    return truth, text, entries, got


def tail_parts(verdict: Verdict, res: Results, kernel: str, good: str, bad: str, tau: float, paper: float):
    """The tail claims have two parts, each judged: one `good` head solves the kernel (relative MSE <= tau,
    every seed), and the `bad` type fails with every H run (its best cell over H above tau, every seed: the
    paper's 'up to 64 heads'). Where the best fit found for some H of the `bad` type reaches tau (a witness
    that it can succeed: floors.py), the task cannot decide the second part. The size: the best `bad` cell
    over one `good` head, beside the paper's ratio ``paper``."""
    from ..tasks.kernel import kernel_values

    got = {r: cells(res, r) for r in (good, bad)}  # res: the runs of this kernel only
    g1, bad_best = got[good].get(1), min_of(got[bad].values())
    var = float((kernel_values(kernel, T) ** 2).sum())  # Var(y) for unit-variance tokens
    floors = {H: res.floor("kernel", kernel, bad, H) for H in got[bad]}
    floors = {H: f / var for H, f in floors.items() if f is not None}
    witness = next((H for H, f in sorted(floors.items()) if f <= tau), None)
    fails = f"{bad} fails with every H run (up to {max(got[bad])})"
    second = Part(fails, *from_truth(None if bad_best is None else bad_best > tau, f"paper's RPE family: {bad}"))
    verdict.testability = Testability(
        fails.split(" fails")[0] + f" with up to {max(got[bad])} heads", f"one {good} head"
    )
    if floors:
        verdict.testability.floors = {f"{bad} best fit found, H={H} (relative MSE)": f for H, f in floors.items()}
        verdict.testability.decidable = witness is None
        verdict.testability.reason = (
            f"the best fit found of the kernel by {witness} {bad} heads has relative MSE {fmt(floors[witness])}, at "
            f"or below {fmt(tau)}: {bad} can solve it, so no run can show it failing"
            if witness is not None
            else f"the best fits found for {bad} stay above {fmt(tau)} at every H run (upper bounds on the optimum)"
        )
        if witness is not None:
            second = Part(fails, UNTESTABLE, verdict.testability.reason)
    second.cells = [f"{bad} best"]
    first = Part(f"{good}, 1 head solves", *from_truth(solved(g1, tau), f"paper's RPE family: {good}"))
    first.cells = [f"{good} H=1"]
    verdict.parts = [first, second]
    verdict.size, verdict.size_name = size(bad_best, g1), f"relative MSE, best {bad} over H / {good} with 1 head"
    verdict.paper_size = paper
    verdict.direction = direction(f"{good} H=1", g1, f"best {bad}", bad_best, tau)
    return verdict


def analyse_4a(res: Results):
    table = kernel_table(res, "rho(t) = t^-0.5: MSE (relative MSE), FFN-free, DP-free", ["log", "lin"], "power:0.5")
    holds, ours, entries, got = one_head_rule(res, "log", "lin", TAU_4A)
    if holds is None:
        return [table], Verdict(None, "incomplete")
    detail = (
        "A log-RPE head's kernel is exactly a normalized power law, so one head represents t^-0.5; "
        "lin heads are sums of exponentials and need more heads for a heavy tail (Thm 5.1)."
    )
    detail += floor_gap(res, "kernel", "power:0.5", ["log", "lin"])
    mse = {r: cells(res, r, metric="val_loss") for r in ("log", "lin")}
    lin_best = min_of(mse["lin"].values())
    reproduced = all_of(reproduces_bound(mse["log"].get(1), 1e-5), reproduces(lin_best, 0.19))
    verdict = Verdict(holds, ours, detail, scope="paper's RPE family: log", tau=TAU_4A, compared=entries)
    tail_parts(verdict, res, "power:0.5", "log", "lin", TAU_4A, 0.19 / 1e-5)  # paper: lin 0.19, log 1 head < 1e-5
    verdict.paper_number = "log, 1 head: MSE < 1e-5; lin, up to 64 heads: 0.19"
    verdict.ours_number = (
        f"log, 1 head: MSE {fmt_spread(mse['log'].get(1))}; lin, best over H: MSE {fmt_spread(lin_best)}"
    )
    verdict.reproduced = reproduced
    verdict.paper_vs_ours = (
        f"One log head reaching MSE < 1e-5 is reproduced ({fmt_spread(mse['log'].get(1))}); lin staying near 0.19 "
        f"with up to 64 heads is {'reproduced' if reproduced is True else 'not reproduced'}: our lin heads reach "
        f"MSE {fmt_spread(lin_best)} (reproduced means within an order of magnitude of 0.19)."
    )
    return [table], verdict


def residual_only(kernel: str, length: int = T) -> float:
    """The relative MSE of a model whose attention outputs nothing (only the residual's lag 0, weighted
    rho(0)): sum_{s >= 1} rho(s)^2 / sum_s rho(s)^2 for i.i.d. unit-variance tokens."""
    from ..tasks.kernel import kernel_values

    rho = kernel_values(kernel, length)
    return float((rho[1:] ** 2).sum() / (rho**2).sum())


def analyse_4b(res: Results):
    tables, parts, judged = [], [], {}
    for beta in ("5", "0.5"):
        where = {"task.kernels": [f"exp:{beta}"]}
        tables.append(
            kernel_table(
                res,
                f"rho(t) = exp(-{beta} t): MSE (relative MSE), FFN-free, DP-free",
                ["lin", "log"],
                f"exp:{beta}",
                where,
            )
        )
        truth, text, entries, got = one_head_rule(res, "lin", "log", TAU_4B, where)
        if truth is None:
            continue
        judged[beta] = (truth, entries, got)
        parts.append(f"beta={beta}: {text}; residual only {fmt(residual_only(f'exp:{beta}'))} -> {truth_label(truth)}")
    if "5" not in judged:
        return tables, Verdict(None, "; ".join(parts) or "incomplete")
    holds, entries, got = judged["5"]  # the paper's beta = 5 decides; 0.5 is reported beside it
    base_rel = residual_only("exp:5")
    detail = (
        f"At beta = 5 the kernel is nearly a delta at lag 0 (rho(1) = 0.0067): the residual path carries lag 0 "
        f"for every RPE type, and a model whose attention outputs nothing already has relative MSE "
        f"{fmt(base_rel)}; what the heads add is the tail below that."
    )
    for beta in ("5", "0.5"):
        gap = floor_gap(
            res.subset(res.select({"task.kernels": [f"exp:{beta}"]})), "kernel", f"exp:{beta}", ["lin", "log"]
        )
        detail += f" beta = {beta}:{gap}" if gap else ""
    tail_tables, diagnostic = diagnostic_4b(res)
    tables += tail_tables
    mse_log = min_of(cells(res, "log", {"task.kernels": ["exp:5"]}, "val_loss").values())
    mse_lin1 = cells(res, "lin", {"task.kernels": ["exp:5"]}, "val_loss").get(1)
    verdict = Verdict(holds, "; ".join(parts), detail, diagnostic, "paper's RPE family: lin", TAU_4B, compared=entries)
    beta5 = res.subset(res.select({"task.kernels": ["exp:5"]}))
    tail_parts(verdict, beta5, "exp:5", "lin", "log", TAU_4B, 5.3e-4 / 1e-7)  # paper: log 5.3e-4, lin 1 head < 1e-7
    verdict.paper_number = "lin, 1 head: MSE < 1e-7; log, up to 64 heads: 5.3e-4"
    verdict.ours_number = f"lin, 1 head: MSE {fmt_spread(mse_lin1)}; log, best over H: MSE {fmt_spread(mse_log)}"
    verdict.reproduced = all_of(reproduces_bound(mse_lin1, 1e-7), reproduces(mse_log, 5.3e-4))
    word = lambda t: {True: "reproduced", False: "not reproduced"}.get(t, "not decided over seeds")  # noqa: E731
    verdict.paper_vs_ours = (
        f"One lin head below MSE 1e-7 is {word(reproduces_bound(mse_lin1, 1e-7))} (ours {fmt_spread(mse_lin1)}); "
        f"the paper's log level 5.3e-4 is {word(reproduces(mse_log, 5.3e-4))} (ours {fmt_spread(mse_log)}), and "
        f"5.3e-4 lies above what attention that outputs nothing gives (relative MSE {fmt(base_rel)})."
    )
    return tables, verdict


EXP_4A = Experiment(
    name="4a",
    specs=lambda p: [kernel_spec("4a", p, [["power:0.5"]], ["log", "lin"])],
    analyse=analyse_4a,
    figure=lambda res, path: kernel_figure(res, path, [("rho(t) = t^-0.5", {})], ["log", "lin"]),
    floors=kernel_floors(["power:0.5"], ["log", "lin"]),
)

# 4b's diagnostic runs: e^{-5t} without its lag-0 term, rho(0) = 0 and rho(s) = e^{-5s} for s = 1..29 (e^{-150}
# and beyond are below float64's reach next to rho(1)), so that the residual path carries nothing of it.
EXP5_TAIL = [0.0] + [math.exp(-5 * s) for s in range(1, 30)]


def diagnostic_4b(res: Results):
    """The explanation 'at beta = 5 log heads reach the paper's level only because the residual carries the
    near-delta at lag 0' predicts that with rho(0) = 0 one lin head still solves the kernel (relative MSE
    <= TAU_4B) while the best log cell over H does not."""
    where = {"task.kernels": [EXP5_TAIL]}
    lin, log = cells(res, "lin", where), cells(res, "log", where)
    if lin.get(1) is None or not [v for v in log.values() if v is not None]:
        return [], ""
    table = kernel_table(
        res, "Diagnostic: rho(t) = exp(-5 t) for t >= 1, rho(0) = 0: MSE (relative MSE)", ["lin", "log"], "", where
    )
    log_best = min_of(log.values())
    return [table], diagnosis(
        f"that with rho(0) = 0 (nothing for the residual to carry) one lin head solves the kernel (<= "
        f"{fmt(TAU_4B)}) and the best log cell over H does not",
        f"lin, 1 head {fmt_spread(lin[1])}; log, best over H {fmt_spread(log_best)}",
        all_of(solved(lin[1], TAU_4B), log_best > TAU_4B),
    )


EXP_4B = Experiment(
    name="4b",
    specs=lambda p: [kernel_spec("4b", p, [["exp:5"], ["exp:0.5"], [EXP5_TAIL]], ["lin", "log"])],
    analyse=analyse_4b,
    figure=lambda res, path: kernel_figure(
        res,
        path,
        [("rho(t) = exp(-5t)", {"task.kernels": ["exp:5"]}), ("rho(t) = exp(-0.5t)", {"task.kernels": ["exp:0.5"]})],
        ["lin", "log"],
    ),
    floors=kernel_floors(["exp:5", "exp:0.5"], ["lin", "log"]),
)
