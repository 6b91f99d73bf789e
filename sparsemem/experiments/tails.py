"""Experiments 4a and 4b: one FFN-free, DP-free layer learning a memory kernel, log against lin RPE.

Each trained cell sits beside its optimal-fit floor: the best MSE any H heads
of that RPE type reach on the kernel (experiments/floors.py).
"""

from __future__ import annotations

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
from .toy import T, base, cell, floor_gap, gain_text, heads_1d


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


def analyse_4a(res: Results):
    table = kernel_table(res, "rho(t) = t^-0.5: MSE (relative MSE), FFN-free, DP-free", ["log", "lin"], "power:0.5")
    log1 = res.spread("val_rel", {"model.rpe": "log", "model.heads": 1})
    lin_best = min_of(res.spread("val_rel", {"model.rpe": "lin", "model.heads": H}) for H in heads_1d("paper"))
    if log1 is None or lin_best is None:
        return [table], Verdict(None, "incomplete")
    holds = all_of(log1 <= 1e-4, lin_best >= 100 * log1)
    ours = (
        f"log, 1 head: {fmt_spread(log1)}; lin, best over H <= 64: {fmt_spread(lin_best)} "
        f"({gain_text(lin_best / log1)} worse)"
    )
    detail = (
        "A log-RPE head's kernel is exactly a normalized power law, so one head represents t^-0.5; "
        "lin heads are sums of exponentials and need many heads for a heavy tail (Thm 5.1)."
    )
    detail += floor_gap(res, "kernel", "power:0.5", ["log", "lin"])
    return [table], Verdict(holds, ours, detail)


def analyse_4b(res: Results):
    tables, parts, verdicts, numbers = [], [], [], {}
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
        lin1 = res.spread("val_rel", {"model.rpe": "lin", "model.heads": 1, **where})
        log_best = min_of(
            res.spread("val_rel", {"model.rpe": "log", "model.heads": H, **where}) for H in heads_1d("paper")
        )
        if lin1 is None or log_best is None:
            continue
        ok = all_of(lin1 <= 1e-5, log_best >= 10 * lin1)
        verdicts.append(ok)
        numbers[beta] = (
            f"lin 1 head {fmt_spread(lin1)}, log best {fmt_spread(log_best)} ({gain_text(log_best / lin1)} worse)",
            ok,
        )
        parts.append(f"beta={beta}: {numbers[beta][0]} -> {truth_label(ok)}")
    holds = verdicts[0] if verdicts else None  # the paper's beta = 5 decides; 0.5 is reported beside it
    detail = (
        "At beta = 5 the kernel is nearly a delta at lag 0 (rho(1) = 0.0067), which the residual path "
        "carries for every RPE type, so a log-RPE model only has to fit a tiny tail; beta = 0.5 tests "
        "the light-tail claim itself."
    )
    for beta in ("5", "0.5"):
        gap = floor_gap(
            res.subset(res.select({"task.kernels": [f"exp:{beta}"]})), "kernel", f"exp:{beta}", ["lin", "log"]
        )
        detail += f" beta = {beta}:{gap}" if gap else ""
    diagnostic = ""
    if "0.5" in numbers:  # the explanation: at a tail that is not a near-delta the claim holds
        diagnostic = diagnosis(
            "that at beta = 0.5, a light tail without the near-delta at lag 0, the rule holds (one lin head <= "
            "1e-5 and >= 10x better than the best log cell)",
            f"at beta = 0.5 {numbers['0.5'][0]}",
            numbers["0.5"][1],
        )
    return tables, Verdict(holds, "; ".join(parts) or "incomplete", detail, diagnostic)


EXP_4A = Experiment(
    name="4a",
    specs=lambda p: [kernel_spec("4a", p, [["power:0.5"]], ["log", "lin"])],
    analyse=analyse_4a,
    figure=lambda res, path: kernel_figure(res, path, [("rho(t) = t^-0.5", {})], ["log", "lin"]),
    floors=kernel_floors(["power:0.5"], ["log", "lin"]),
)

EXP_4B = Experiment(
    name="4b",
    specs=lambda p: [kernel_spec("4b", p, [["exp:5"], ["exp:0.5"]], ["lin", "log"])],
    analyse=analyse_4b,
    figure=lambda res, path: kernel_figure(
        res,
        path,
        [("rho(t) = exp(-5t)", {"task.kernels": ["exp:5"]}), ("rho(t) = exp(-0.5t)", {"task.kernels": ["exp:0.5"]})],
        ["lin", "log"],
    ),
    floors=kernel_floors(["exp:5", "exp:0.5"], ["lin", "log"]),
)
