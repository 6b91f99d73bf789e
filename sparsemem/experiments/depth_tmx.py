"""1a's TMX arm: normalization-free TMX attention under lin RPE (Prop 4.3), where a token gate can switch a
head. It counts only once it trains: its learning rate and p's initialisation are swept (one seed) before
any comparison is read from it."""

from __future__ import annotations

from .base import Results, Table, fmt
from .synthetic import MODEL_TMX, arms

TMX_LR = (1e-4, 1e-3, 1e-2)
TMX_INIT = (None, 0.1, 1.0)  # None: the spread of p over heads
UNTRAINED = 0.9  # an arm at or above this relative MSE in every run learned nothing


def tmx_settings() -> list[dict]:
    return [{"train.lr": lr, **({} if p is None else {"model.rpe_init": p})} for lr in TMX_LR for p in TMX_INIT]


def tmx_sweep(res: Results) -> tuple[list[Table], str]:
    """The TMX arm's learning-rate and initialisation sweep: does any setting train? Where the deeper and
    the wider arm both do, their best settings are compared."""
    sub = res.subset(res.select({"model.attention": "tmx", "train.seed": 0}))  # the sweep runs seed 0
    if not sub.rows:
        return [], ""
    rows, best = [], {}
    for name, arm in arms(MODEL_TMX, width=False).items():
        for lr in TMX_LR:
            line = [name, arm["model.layers"], arm["model.heads"], lr]
            for p in TMX_INIT:
                cell = sub.spread("val_rel", {**arm, "train.lr": lr, "model.rpe_init": p})
                line.append(None if cell is None else cell.median)
                if cell is not None and (name not in best or cell.median < best[name][0]):
                    best[name] = (cell.median, lr, "spread" if p is None else p)
            rows.append(line)
    table = Table(
        "Diagnostic: normalization-free TMX arm (lin RPE, nested task of lag bound 24), learning rate and p's "
        "initialisation swept, seed 0: relative MSE",
        ["arm", "L", "H", "lr"] + [f"p init {'spread' if p is None else p}" for p in TMX_INIT],
        rows,
    )
    if not best:
        return [table], ""
    trained = {n: v for n, v in best.items() if v[0] < UNTRAINED}
    if not trained:
        return [table], (
            f"TMX: no setting of {len(tmx_settings())} (lr x p init) trained any arm (relative MSE >= "
            f"{UNTRAINED} in every run; best {fmt(min(v[0] for v in best.values()))}): the arm is not counted"
        )
    text = "TMX: best setting per arm " + "; ".join(
        f"{n} {fmt(v[0])} (lr {v[1]}, p init {v[2]})" for n, v in best.items()
    )
    if len(trained) < len(best):
        text += f"; an arm that learned nothing (>= {UNTRAINED}) is not counted"
    if "+layer" in trained and "+heads" in trained:
        deeper = trained["+layer"][0] < trained["+heads"][0]
        text += f"; at their best settings (one seed) the deeper arm is {'below' if deeper else 'not below'} the wider"
    return [table], text
