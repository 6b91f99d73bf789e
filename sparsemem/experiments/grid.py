"""The grid over heads H and FFN width m that experiments 1b, 2a, 2b and 3a share (docs/reproduction.md).

The paper does not say which RPE these used. Each grid runs under lin, log and
a learned per-distance bias (the verdicts are judged over these three), and
beside them under lin and log with p free in sign (``lin±``, ``log±``:
model.rpe_sign = free, a variant outside the paper's family, whose kernels may
grow with the lag). Each RPE with a fixed kernel shape gets its optimal-fit
floor for the experiment's lags (experiments/floors.py) beside its trained
error. The experiments: heads_width.py (1b, 2a, 2b) and dp_fixed.py (3a).
"""

from __future__ import annotations

import math
from typing import Optional

from ..plotting import pyplot, save_figure
from .base import Results, Table, fmt, fmt_spread, min_of, seeds_of, spec
from .floors import FIT_LABELS, FloorSpec
from .toy import LAG_1, LAGS_3, T, base, cell_text, fixed_task

PAPER_RPES = ["lin", "log", "learned"]  # the verdicts are judged over these
VARIANTS = {
    "lin": {"model.rpe": "lin"},
    "log": {"model.rpe": "log"},
    "learned": {"model.rpe": "learned"},
    "lin±": {"model.rpe": "lin", "model.rpe_sign": "free"},
    "log±": {"model.rpe": "log", "model.rpe_sign": "free"},
}
RPES = list(VARIANTS)


def rpe_where(label: str, more: Optional[dict] = None) -> dict:
    """The row filter (dotted keys) of an RPE label (``lin``: p positive, as the paper's family; ``lin±``: sign
    free), with ``more`` config keys, dotted (``{"model.heads": 4}``)."""
    case = VARIANTS[label]
    return {
        "model.rpe": case["model.rpe"],
        "model.rpe_sign": case.get("model.rpe_sign", "positive"),
        **(more or {}),
    }


def grid_hm(profile: str) -> tuple[list[int], list[int]]:
    if profile == "paper":
        return [1, 2, 4, 8, 16, 32, 64], [16, 64, 256]
    return [1, 8, 32], [16, 64, 256]


TASK_1B = fixed_task(LAGS_3, {"kind": "relu_net", "width": 64})
TASK_2A = fixed_task(LAG_1, {"kind": "relu_net", "width": 64})
TASK_2B = fixed_task(LAGS_3, "sum")


def hm_spec(name: str, profile: str, task: dict, model: Optional[dict] = None, rpes=RPES):
    Hs, ms = grid_hm(profile)
    return spec(
        name,
        base(profile, task, model or {}),
        {"model.heads": Hs, "model.ffn_width": ms},
        seeds=seeds_of(profile),
        cases=[VARIANTS[r] for r in rpes],
    )


def floor_specs(quantity: str, *targets: str):
    """The floors of every fixed-shape RPE label for H up to the profile's largest, for each target."""

    def specs(profile: str) -> list[FloorSpec]:
        return [FloorSpec(quantity, t, rpe, grid_hm(profile)[0][-1], T) for t in targets for rpe in FIT_LABELS]

    return specs


def reading_table(res: Results, quantity: str, ours: str, other: str, what: str) -> Table:
    """The index reading: the paper's x_i read as lag T - i (ours) against as lag i (the other reading), by
    the best fits found for each fixed-shape RPE at each H (upper bounds on the optimum)."""
    Hs, _ = grid_of(res)
    rows = [[H] + [fmt(res.floor(quantity, t, r, H)) for r in FIT_LABELS for t in (ours, other)] for H in Hs]
    header = ["H"] + [f"{r}: {name}" for r in FIT_LABELS for name in ("lags T - i (ours)", "lags i")]
    return Table(
        f"Index reading: the paper writes x_48, x_56, x_99 of x_1..x_1000 read at the last position; we read "
        f"x_i as lag 1000 - i (lags 952, 944, 901). Best {what} found under either reading ({quantity} "
        f"floors; 0 = every token read exactly, relative to Var(y) for kernels: MSE)",
        header,
        rows,
    )


def value(res: Results, rpe: str, H: int, m: int, metric: str = "val_rel", attention: str = "dp_free"):
    return res.spread(metric, rpe_where(rpe, {"model.heads": H, "model.ffn_width": m, "model.attention": attention}))


def grid_of(res: Results) -> tuple[list[int], list[int]]:
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    ms = sorted({r["config"]["model"]["ffn_width"] for r in res.rows})
    return Hs, ms


def hm_table(res: Results, rpe: str, Hs, ms, attention: str = "dp_free", title: str = "") -> Table:
    where = rpe_where(rpe, {"model.attention": attention})
    mse, rel = (res.grid("model.heads", "model.ffn_width", metric, where) for metric in ("val_loss", "val_rel"))
    rows = [[H] + [cell_text(mse, rel, H, m) for m in ms] for H in Hs]
    return Table(
        title or f"RPE {rpe}: final validation MSE (relative MSE), rows H, columns m",
        ["H \\ m"] + [str(m) for m in ms],
        rows,
    )


def hm_tables(res: Results, attention: str = "dp_free") -> list[Table]:
    Hs, ms = grid_of(res)
    return [hm_table(res, rpe, Hs, ms, attention) for rpe in RPES if res.select(rpe_where(rpe))]


def learned_floor(quantity: str, target: str, H: int) -> float:
    """A learned bias's floor, in the limit of large biases: one head can put its weight on any set of lags,
    so a kernel with weights of one sign is one head's (0), and H heads read H of M lags' tokens apart:
    the mean extraction error is max(M - H, 0) / M."""
    if quantity == "extraction":
        M = len(target.removeprefix("lags:").split("+"))
        return max(M - H, 0) / M
    return 0.0


def floor_table(res: Results, quantity: str, target: str, title: str, metric: str = "val_rel") -> Table:
    """Per H: each RPE's best trained cell over m beside its optimal-fit floor for the same H."""
    Hs, ms = grid_of(res)
    rows = []
    for H in Hs:
        row = [H]
        for rpe in RPES:
            got = min_of(value(res, rpe, H, m, metric) for m in ms)
            fl = res.floor(quantity, target, rpe, H) if rpe in FIT_LABELS else learned_floor(quantity, target, H)
            row += [fmt_spread(got), fmt(fl)]
        rows.append(row)
    header = ["H"] + [h for r in RPES for h in (f"{r}: trained, best m", f"{r}: floor")]
    return Table(title, header, rows)


def hm_figure(res: Results, path: str, title: str, attention: str = "dp_free") -> None:
    plt = pyplot()

    Hs, ms = grid_of(res)
    rpes = [r for r in RPES if res.select(rpe_where(r))]
    fig, axes = plt.subplots(1, len(rpes), figsize=(4.2 * len(rpes), max(3.6, 0.6 * len(Hs) + 1.6)), squeeze=False)
    fig.subplots_adjust(wspace=0.35)
    im = None
    for ax, rpe in zip(axes[0], rpes):
        pivot = res.grid("model.heads", "model.ffn_width", "val_rel", rpe_where(rpe, {"model.attention": attention}))
        cells = [[pivot.at(H, m) for m in ms] for H in Hs]
        vals = [[_log10(getattr(c, "median", None)) for c in row] for row in cells]
        vals = [[v if math.isfinite(v) else math.nan for v in row] for row in vals]  # unknown or diverged: blank
        im = ax.imshow(vals, origin="lower", cmap="viridis_r", vmin=-8, vmax=0.5, aspect="auto")
        ax.set_xticks(range(len(ms)), [str(m) for m in ms])
        ax.set_yticks(range(len(Hs)), [str(h) for h in Hs])
        ax.set_xlabel("FFN width m")
        ax.set_ylabel("heads H")
        ax.set_title(f"RPE {rpe}" + (" (p free in sign)" if rpe.endswith("±") else ""))
        for i, row in enumerate(vals):
            for j, v in enumerate(row):
                if math.isnan(v):
                    continue
                c = cells[i][j]
                lo, hi = _log10(c.lo), _log10(c.hi)
                text = f"{v:.1f}" if c.lo == c.hi else f"{v:.1f}\n[{lo:.1f}, {hi:.1f}]"  # the spread over seeds
                ax.text(j, i, text, ha="center", va="center", color="w" if v > -4 else "k", fontsize=7, linespacing=0.9)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="log10 relative MSE: median, [min, max] over seeds")
    fig.suptitle(title, y=1.03)
    save_figure(fig, path)


def _log10(v: Optional[float]) -> float:
    """log10 for a heat map's cell (floored at 1e-12); nan for no value, inf for a diverged seed."""
    if v is None or math.isnan(v):
        return math.nan
    return math.inf if math.isinf(v) else math.log10(max(v, 1e-12))


def gains(res: Results, rpe: str, Hs, ms) -> dict:
    """MSE ratios as Spreads over seeds: raising m at the largest H, raising H at the smallest and largest m;
    and the best cell."""
    v = lambda H, m: value(res, rpe, H, m)  # noqa: E731
    over = lambda a, b: None if a is None or b is None else a / b  # noqa: E731
    return {
        "m_at_Hmax": over(v(Hs[-1], ms[0]), v(Hs[-1], ms[-1])),
        "m_at_Hmin": over(v(Hs[0], ms[0]), v(Hs[0], ms[-1])),
        "H_at_mmax": over(v(Hs[0], ms[-1]), v(Hs[-1], ms[-1])),
        "H_at_mmin": over(v(Hs[0], ms[0]), v(Hs[-1], ms[0])),
        "best": min_of(v(H, m) for H in Hs for m in ms),
    }


def variants_line(res: Results) -> str:
    """One sentence on the sign-free variants: their best cells beside lin's and log's."""
    best = {r: gains(res, r, *grid_of(res))["best"] for r in RPES if res.select(rpe_where(r))}
    if not any(r.endswith("±") for r in best):
        return ""
    return (
        " With p free in sign (a variant outside the paper's family), best relative MSE: "
        + ", ".join(
            f"{r} {fmt_spread(best[r])} (p > 0: {fmt_spread(best.get(r[:-1]))})" for r in best if r.endswith("±")
        )
        + "."
    )


def paper_match(res: Results, rpes=RPES) -> str:
    """Which RPE, if any, reproduces the paper's reading 'raising H takes the error from about 1 to tiny':
    the smallest-H cell above 0.1 and the largest-H cell below 1e-4 in relative MSE, at some width."""
    Hs, ms = grid_of(res)
    found = []
    for rpe in rpes:
        for m in ms:
            lo, hi = value(res, rpe, Hs[-1], m), value(res, rpe, Hs[0], m)
            if lo is not None and hi is not None and hi.median >= 0.1 and lo.median <= 1e-4:
                found.append(rpe)
                break
    if found:
        return f" Only {', '.join(found)} reproduce{'s' if len(found) == 1 else ''} the paper's fall with H."
    return " No RPE reproduces the paper's fall with H."
