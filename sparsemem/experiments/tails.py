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
from .outcomes import REFUTED, Part, Testability, combine, from_truth
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


def kernel_var(kernel: str, length: int = T) -> float:
    """Var(y) of a kernel task with unit-variance i.i.d. tokens: sum_s rho(s)^2."""
    from ..tasks.kernel import kernel_values

    return float((kernel_values(kernel, length) ** 2).sum())


# The paper's own bars are MSEs (one log head < 1e-5 in 4a, one lin head < 1e-7 in 4b); the rules read
# relative MSE, so each bar is divided by its kernel's Var(y) (7.48 for t^-0.5, 1.00005 for e^-5t).
TAU_4A = 1e-5 / kernel_var("power:0.5")
TAU_4B = 1e-7 / kernel_var("exp:5")


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


def tail_parts(verdict: Verdict, res: Results, kernel, good: str, bad: str, tau: float, paper=None, prefix=""):
    """The tail claims in three parts, each judged at the level tau: one `good` head solves the kernel; one
    `bad` head does not (the contrast the task can show only if one `bad` head's best fit found stays above
    tau); and the `bad` type fails with every H run (the paper's 'up to 64 heads'). A best fit found for
    some H at or below tau is a construction that solves the kernel, so it refutes the third part whatever
    training reached. The size (best `bad` cell over H against one `good` head) is shown where the two are
    not a tie, beside the paper's ratio ``paper``. ``res``: the runs of this kernel only; ``prefix`` names
    their cells (a variant's)."""
    got = {r: cells(res, r) for r in (good, bad)}
    g1, b1, bad_best = got[good].get(1), got[bad].get(1), min_of(got[bad].values())
    var = kernel_var(kernel)
    floors = {H: res.floor("kernel", kernel, bad, H) for H in got[bad]} if isinstance(kernel, str) else {}
    floors = {H: f / var for H, f in floors.items() if f is not None}
    witness = next((H for H, f in sorted(floors.items()) if f <= tau), None)
    family = lambda r: f"paper's RPE family: {r}"  # noqa: E731
    first = Part(f"{good}, 1 head solves", *from_truth(solved(g1, tau), family(good)), [f"{prefix}{good} H=1"])
    no = None if b1 is None else b1 > tau
    second = Part(f"{bad}, 1 head does not", *from_truth(no, family(bad)), [f"{prefix}{bad} H=1"])
    fails = f"{bad} fails with every H run (up to {max(got[bad])})"
    worse = None if bad_best is None else bad_best > tau
    third = Part(fails, *from_truth(worse, family(bad)), [f"{prefix}{bad} best"])
    if floors.get(1) is not None and floors[1] <= tau:  # a construction with one head: rests on no trained cell
        second.outcome, second.cells = REFUTED, []
        second.reason = f"the best fit found by one {bad} head has relative MSE {fmt(floors[1])}, at most {fmt(tau)}"
    if witness is not None:  # a construction: the part rests on no trained cell, so no budget can undo it
        need = heads_to_solve(got[bad], tau)
        third.outcome, third.cells = REFUTED, []
        third.reason = (
            f"the best fit found of the kernel by {witness} {bad} heads has relative MSE {fmt(floors[witness])}, at "
            f"or below {fmt(tau)}: a construction that solves it (trained {bad} solves from "
            + (f"H = {need})" if need else "no H run)")
        )
    one = floors.get(1)
    verdict.testability = Testability(
        f"one {bad} head",
        f"one {good} head",
        None if one is None else one > tau,
        "no floor computed"
        if one is None
        else f"the best fit found by one {bad} head has relative MSE {fmt(one)}, "
        + (f"above {fmt(tau)}: one head of each type can be told apart" if one > tau else f"at or below {fmt(tau)}"),
        {f"{bad} best fit found, H={H} (relative MSE)": f for H, f in floors.items()},
    )
    verdict.parts = [first, second, third]
    verdict.size, verdict.size_name = size(bad_best, g1, tau), f"relative MSE, best {bad} over H / {good} with 1 head"
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
    found = variant_4b(res)
    if found is not None:
        verdict.variant, entries = found
        verdict.compared += entries
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


def variant_4b(res: Results):
    """4b's claim on e^{-5t} with rho(0) = 0 (EXP5_TAIL), where the residual path carries nothing of the
    kernel: its three parts at 4b's level, as a Part with the compared entries of its cells."""
    sub = res.subset(res.select({"task.kernels": [EXP5_TAIL]}))
    if not sub.rows:
        return None
    scratch = tail_parts(Verdict(None, ""), sub, EXP5_TAIL, "lin", "log", TAU_4B, prefix="variant ")
    lin, log = cells(sub, "lin"), cells(sub, "log")
    entries = [compared("variant lin H=1", lin.get(1)), compared("variant log H=1", log.get(1))]
    entries.append(compared("variant log best", min_of(log.values())))
    outcome, reason = combine(scratch.parts)
    name = "e^-5t with rho(0) = 0 (nothing for the residual to carry)"
    return Part(name, outcome, reason, [e["name"] for e in entries]), entries


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
