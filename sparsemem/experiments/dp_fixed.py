"""Experiment 3a: one layer with and without dot-product attention on the target of 1b (docs/reproduction.md).

Its diagnostic reads the validation curve every run keeps in the store: the
steps each model needs to reach relative MSE 1e-2.
"""

from __future__ import annotations

import math
from typing import Optional

from ..plotting import log_axes, plot_known, pyplot, save_figure
from .base import (
    Experiment,
    Results,
    Spread,
    Table,
    Verdict,
    all_of,
    diagnosis,
    fmt,
    ratio,
    seeds_of,
    spec,
)
from .claims import MARGINAL, claim_3a
from .grid import PAPER_RPES, TASK_1B, grid_hm, hm_spec, rpe_where, value
from .rules import TAU, helps, tie
from .toy import base, cell, gain_text

# -- 3a ------------------------------------------------------------------------
STEPS_TO = 1e-2  # 3a's diagnostic: steps to this relative MSE (the rule's "DP-free reaches" bar)


def specs_3a(profile: str):
    Hs, ms = grid_hm(profile)
    dp_H = Hs if profile == "paper" else [8, 32]
    dp_m = ms if profile == "paper" else [256]
    return [
        hm_spec("3a", profile, TASK_1B, rpes=PAPER_RPES),
        spec(
            "3a",
            base(profile, TASK_1B, {"attention": "dp"}),
            {"model.rpe": PAPER_RPES, "model.heads": dp_H, "model.ffn_width": dp_m},
            seeds=seeds_of(profile),
        ),
    ]


def steps_to(res: Results, where: dict, threshold: float = STEPS_TO) -> Optional[Spread]:
    """Over seeds: the first evaluated step whose relative MSE is at most ``threshold`` (inf: never);
    None where the rows hold no curve (stores written before curves were kept)."""
    vals = []
    for row in res.select(where):
        curve = row.get("metrics", {}).get("curve")
        if row["status"] not in ("done", "diverged") or curve is None:
            continue
        hit = [s for s, v in curve if isinstance(v, (int, float)) and v <= threshold]
        vals.append(float(hit[0]) if hit else math.inf)
    return Spread(vals) if vals else None


def fmt_steps(s: Optional[Spread]) -> str:
    if s is None:
        return "—"
    one = lambda x: "never" if math.isinf(x) else f"{x:.0f}"  # noqa: E731
    return one(s.median) if s.lo == s.hi else f"{one(s.median)} [{one(s.lo)}, {one(s.hi)}]"


def grid_pairs(res: Results, attention: str):
    return sorted(
        {
            (r["config"]["model"]["heads"], r["config"]["model"]["ffn_width"])
            for r in res.select({"model.attention": attention})
        }
    )


def diagnostic_3a(res: Results, H: int, m: int) -> str:
    """The explanation 'DP-free can express the target; DP only trains faster' predicts that, at the cell
    the rule compares, DP-free reaches relative MSE 1e-2 within the run and DP reaches it in fewer steps."""
    where = rpe_where("learned", {"model.heads": H, "model.ffn_width": m})
    free, dp = (steps_to(res, {**where, "model.attention": att}) for att in ("dp_free", "dp"))
    if free is None or dp is None:
        return ""
    reaches = free <= res.rows[0]["config"]["train"]["steps"]
    return diagnosis(
        f"(DP-free can express the target; DP only trains faster) that under learned RPE at H={H}, m={m} DP-free "
        f"reaches relative MSE {fmt(STEPS_TO)} within the run and DP reaches it in fewer steps",
        f"steps to {fmt(STEPS_TO)} (first evaluation at or below): DP-free {fmt_steps(free)}, DP {fmt_steps(dp)}",
        all_of(reaches, dp < free),
        f"one cell, read at the {res.rows[0]['config']['train']['eval_every']}-step evaluation interval",
    )


YES_NO = {True: "yes", False: "no", None: "—"}


def analyse_3a(res: Results):
    dp_cells = grid_pairs(res, "dp")
    rows = []
    for rpe in PAPER_RPES:
        for H, m in dp_cells:
            free, dp = (
                rpe_where(rpe, {"model.heads": H, "model.ffn_width": m, "model.attention": att})
                for att in ("dp_free", "dp")
            )
            a, b = value(res, rpe, H, m), value(res, rpe, H, m, attention="dp")
            rows.append(
                [
                    rpe,
                    H,
                    m,
                    cell(res, free),
                    cell(res, dp),
                    gain_text(ratio(a and a.median, b and b.median)),
                    "tie"
                    if tie(a, b)
                    else {True: "yes", False: "no", None: "—"}.get(helps(a, b, TAU, MARGINAL), "mixed"),
                    fmt_steps(steps_to(res, free)),
                    fmt_steps(steps_to(res, dp)),
                ]
            )
    table = Table(
        f"1-layer, target of 1b: DP-free against DP, MSE (relative MSE); gain = DP-free / DP; steps to "
        f"relative MSE {fmt(STEPS_TO)} (first evaluation at or below; median [range] over seeds); DP helps: the "
        f"DP-free cell unsolved (relative MSE > {fmt(TAU)}) and DP 10x better (3a's reading of 'not marginal'), every "
        "pairing of seeds; tie: both cells solved or both unlearned (relative MSE >= 0.9), which decides nothing",
        [
            "RPE",
            "H",
            "m",
            "DP-free",
            "DP",
            "gain from DP",
            "DP gains >= 10x, DP-free unsolved",
            "DP-free: steps",
            "DP: steps",
        ],
        rows,
    )
    detail = "DP-free cells are shared with experiment 1b (same configs, one run each)."
    diagnostic = ""
    if dp_cells:
        H, m = dp_cells[-1]
        flat = [
            res.value("val_rel", rpe_where(r, {"model.attention": att, "model.heads": H, "model.ffn_width": m}))
            for r in ("lin", "log")
            for att in ("dp_free", "dp")
        ]
        if flat and all(v is not None and v >= 0.5 for v in flat):
            detail += " Under lin and log RPE neither model learns anything (relative MSE about 1), as in 1b."
        diagnostic = diagnostic_3a(res, H, m)
    if not dp_cells:
        return [table], Verdict(None, "no runs", detail, diagnostic)
    return [table], claim_3a(res, Verdict(None, "", detail, diagnostic), dp_cells)


def figure_3a(res: Results, path: str) -> None:
    """Final relative MSE against H at the largest width of the DP cells (bands: the seeds' range), DP-free
    solid and DP dashed, per RPE; and, where curves are stored, the learned-RPE validation curves."""
    plt = pyplot()

    cells = grid_pairs(res, "dp")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
    if cells:
        m_top = max(m for _, m in cells)
        Hs = sorted({H for H, m in cells if m == m_top})
        for k, rpe in enumerate(PAPER_RPES):
            for att, style in (("dp_free", "o-"), ("dp", "s--")):
                ax.set_prop_cycle(color=[plt.rcParams["axes.prop_cycle"].by_key()["color"][k]])
                vals = [value(res, rpe, H, m_top, attention=att) for H in Hs]
                plot_known(ax, Hs, vals, style, f"{rpe}, {'DP' if att == 'dp' else 'DP-free'}")
        log_axes(ax, "heads H", "relative MSE (median, seed range)", f"3a: DP-free against DP, m = {m_top}", legend=7)
    if cells:
        H, m = cells[-1]
        for att, style in (("dp_free", "-"), ("dp", "--")):
            for row in res.select(
                rpe_where("learned", {"model.attention": att, "model.heads": H, "model.ffn_width": m})
            ):
                curve = row.get("metrics", {}).get("curve") or []
                pts = [(s, v) for s, v in curve if isinstance(v, (int, float)) and v > 0]
                if pts:
                    ax2.plot(
                        *zip(*pts),
                        style,
                        color="C0" if att == "dp_free" else "C3",
                        alpha=0.8,
                        label=f"{'DP' if att == 'dp' else 'DP-free'}, seed {row['config']['train']['seed']}",
                    )
        ax2.axhline(STEPS_TO, color="gray", lw=0.8, ls=":")
        ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_ylabel("validation relative MSE")
        ax2.set_title(f"learned RPE, H={H}, m={m}: validation curves")
        if ax2.lines[:-1]:
            ax2.legend(fontsize=7)
    save_figure(fig, path)


EXP_3A = Experiment(
    name="3a",
    specs=specs_3a,
    analyse=analyse_3a,
    figure=figure_3a,
)
