"""What the paper's toy experiments share (docs/reproduction.md).

Common setup: x in {+-1}^1000 (d = 1), output read at the last position, so
the paper's position i is lag 1000 - i: its x_48, x_56, x_99 are lags 952,
944 and 901. Every cell is trained with the same AdamW setting (base.py).
The experiments themselves: heads_width.py (1b, 2a, 2b, 3a) and tails.py
(4a, 4b).
"""

from __future__ import annotations

import math
from typing import Optional

from .base import Pivot, Results, Spread, fmt, fmt_spread, train_settings

T = 1000
LAGS_3 = [952, 944, 901]  # x_48, x_56, x_99
LAG_1 = [901]  # x_99
# The other reading of the paper's indices: x_i as lag i (the memory i steps back), for the report's table
OTHER_LAGS_3 = [48, 56, 99]
OTHER_LAG_1 = [99]
DIM = 64


def base(profile: str, task: dict, model: dict) -> dict:
    return {
        "task": {"seq_len": T, "input": "rademacher", "output": "last", **task},
        "model": {"layers": 1, "dim": DIM, "rpe_max_distance": T, "attention": "dp_free", **model},
        "train": train_settings(profile),
    }


def fixed_task(lags, readout) -> dict:
    return {"kind": "fixed", "lags": lags, "readout": readout}


def heads_1d(profile: str) -> list[int]:
    return [1, 2, 4, 8, 16, 32, 64]


def cell(res: Results, where: Optional[dict] = None) -> str:
    """MSE (relative MSE): medians over seeds, the relative MSE's range across seeds beside it."""
    return _cell(res.spread("val_loss", where), res.spread("val_rel", where))


def cell_text(mse: Pivot, rel: Pivot, row, col) -> str:
    """``cell`` for the (row, col) entry of two pivots of one filter, MSE and relative MSE."""
    return _cell(mse.at(row, col), rel.at(row, col))


def _cell(a: Optional[Spread], r: Optional[Spread]) -> str:
    return f"{fmt(a.median)} ({fmt_spread(r)})" if a is not None else "—"


def gain_text(g) -> str:
    """A gain (a ratio of MSEs) as "12.3x", with its range across seeds as "[lo, hi]" where it has one."""
    if g is None:
        return "—"
    one = lambda x: "inf" if math.isinf(x) else f"{x:.3g}x"  # noqa: E731
    if isinstance(g, Spread):
        return one(g.median) if g.lo == g.hi else f"{one(g.median)} [{one(g.lo)}, {one(g.hi)}]"
    return one(g)


def floor_gap(
    res: Results,
    quantity: str,
    target: str,
    rpes: list[str],
    metric: str = "val_loss",
    where_of=None,
    where: Optional[dict] = None,
) -> str:
    """A sentence on trained cells against their stored optimal floors; flags a trained value below one.

    ``where_of(rpe)`` gives the row filter of an RPE label (default: model.rpe = the label).
    """
    where_of = where_of or (lambda rpe: {"model.rpe": rpe})
    below, gaps = [], []
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    for rpe in rpes:
        for H in Hs:
            got = res.value(metric, {"model.heads": H, **where_of(rpe), **(where or {})})
            fl = res.floor(quantity, target, rpe, H)
            if got is None or fl is None:
                continue
            if got < fl * 0.9 - 1e-12:  # 10% for the sampling error of the validation set
                below.append(f"{rpe} H={H}")
            gaps.append((got / max(fl, 1e-12), rpe, H))  # floors below 1e-12 are float noise
    if below:
        return f" Trained MSE below the best fit found at {', '.join(below)}: a bug in the fit or the model."
    if not gaps:
        return ""
    worst = max(gaps)
    return (
        f" No trained cell beats the best fit found for it; the largest optimization gap is {worst[1]} RPE at "
        f"H={worst[2]} ({worst[0]:.2g}x the floor, floors taken as at least 1e-12)."
    )
