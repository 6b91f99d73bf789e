"""Forensics: which of the choices the paper leaves open would have given its numbers that we do not reproduce.

At the cells the paper reports (2a, 2b, 4a, 4b), the choices it does not state are swept: the RPE type
over the whole registry, the reading of its indices (x_i as lag T - i, ours, or as lag i), the RPE's
learning-rate scale (1: p trains at the base rate; 30: ours) and p's initialisation (a spread over heads,
ours, or every head at p = 1). Each setting's number stands beside the paper's, judged by the same
reproduction rules as the verdicts (rules.py). The table is "what the paper's numbers would have needed";
it judges no claim. A setting that does not reproduce a number is a best-found answer under our other
choices (D, AdamW, steps), not proof that no setting would.
"""

from __future__ import annotations

from ..registry import RPES
from .base import Experiment, Results, Table, Verdict, all_of, fmt_spread, min_of, seeds_of, spec
from .grid import TASK_2A, TASK_2B
from .rules import reproduces, reproduces_bound
from .toy import OTHER_LAG_1, OTHER_LAGS_3, base, fixed_task

TRAINED = [r for r in RPES if r != "none"]  # every registered RPE that has something to train or fix
LR_SCALES = (1.0, 30.0)
INITS = (None, 1.0)  # None: the spread p_h = 2^(-8h/H) (lin) or 2^(-3h/H) (log-type); 1.0: every head at p = 1
READINGS = {
    "ours": (TASK_2A, TASK_2B),
    "lags i": (fixed_task(OTHER_LAG_1, TASK_2A["readout"]), fixed_task(OTHER_LAGS_3, "sum")),
}
KERNEL_HEADS = (1, 8, 64)


def _kernel_cases(failing: str) -> list[dict]:
    """4a/4b: the failing RPE under every learning-rate scale and initialisation; the other types as ours."""
    cases = [{"model.rpe": failing, "train.rpe_lr_scale": s, "model.rpe_init": i} for s in LR_SCALES for i in INITS]
    return cases + [{"model.rpe": r} for r in TRAINED if r not in (failing, "learned")]


def _grid_cases() -> list[dict]:
    """2a/2b: every RPE at our learning-rate scale; lin, log and learned also at the base rate."""
    return [{"model.rpe": r} for r in TRAINED] + [
        {"model.rpe": r, "train.rpe_lr_scale": 1.0} for r in ("lin", "log", "learned")
    ]


def specs(profile: str):
    seeds = seeds_of(profile)
    kernel = lambda k: base(profile, {"kind": "kernel", "kernels": [k]}, {"ffn_width": 0})  # noqa: E731
    out = [
        spec("forensics", kernel("power:0.5"), {"model.heads": list(KERNEL_HEADS)}, seeds, _kernel_cases("lin")),
        spec("forensics", kernel("exp:5"), {"model.heads": list(KERNEL_HEADS)}, seeds, _kernel_cases("log")),
    ]
    if profile == "paper":  # the FFN grids' cells: minutes a run at T = 1000 on a CPU
        for t2a, t2b in READINGS.values():
            out.append(
                spec(
                    "forensics", base(profile, t2a, {"heads": 1}), {"model.ffn_width": [16, 256]}, seeds, _grid_cases()
                )
            )
            out.append(
                spec("forensics", base(profile, t2b, {"ffn_width": 16}), {"model.heads": [1, 64]}, seeds, _grid_cases())
            )
    return out


def _setting(row: dict) -> tuple:
    m, t = row["config"]["model"], row["config"]["train"]
    return m["rpe"], t["rpe_lr_scale"], m.get("rpe_init")


def _label(setting: tuple, reading: str = "") -> str:
    rpe, lr, init = setting
    return f"{rpe}, RPE lr x{lr:g}, p init {'spread' if init is None else f'{init:g}'}" + (
        f", {reading}" if reading else ""
    )


def _mse(res: Results, where: dict):
    return res.spread("val_loss", where)


def kernel_rows(res: Results, kernel: str, paper: str, judge) -> list[list]:
    sub = res.subset(res.select({"task.kind": "kernel", "task.kernels": [kernel]}))
    rows = []
    for setting in sorted({_setting(r) for r in sub.rows}, key=str):
        rpe, lr, init = setting
        where = {"model.rpe": rpe, "train.rpe_lr_scale": lr, "model.rpe_init": init}
        per_h = [_mse(sub, {**where, "model.heads": H}) for H in KERNEL_HEADS]
        best = min_of(per_h)
        cells = ", ".join(f"H={H} {fmt_spread(v)}" for H, v in zip(KERNEL_HEADS, per_h))
        rows.append([paper, _label(setting), cells, _word(judge(best))])
    return rows


def grid_rows(res: Results, name: str, key: str, levels: tuple, paper: str, judge) -> list[list]:
    rows = []
    for reading, (t2a, t2b) in READINGS.items():
        task = t2a if name == "2a" else t2b
        sub = res.subset(
            res.select({"task.kind": "fixed", "task.lags": task["lags"], "task.readout.kind": _kind(task)})
        )
        for setting in sorted({_setting(r) for r in sub.rows}, key=str):
            rpe, lr, init = setting
            where = {"model.rpe": rpe, "train.rpe_lr_scale": lr, "model.rpe_init": init}
            a, b = (_mse(sub, {**where, key: v}) for v in levels)
            cells = f"{key.split('.')[-1]}={levels[0]} {fmt_spread(a)} -> {levels[1]} {fmt_spread(b)}"
            rows.append([paper, _label(setting, reading), cells, _word(judge(a, b))])
    return rows


def _kind(task: dict) -> str:
    readout = task["readout"]
    return readout["kind"] if isinstance(readout, dict) else readout


def _word(truth) -> str:
    return {True: "yes", False: "no", None: "—"}.get(truth, "over seeds: mixed")


def analyse(res: Results):
    rows = kernel_rows(res, "power:0.5", "4a: lin up to 64 heads MSE 0.19", lambda b: reproduces(b, 0.19))
    rows += kernel_rows(res, "exp:5", "4b: log up to 64 heads MSE 5.3e-4", lambda b: reproduces(b, 5.3e-4))
    rows += grid_rows(
        res,
        "2a",
        "model.ffn_width",
        (16, 256),
        "2a: H = 1, MSE 0.49 -> 0.002 as m rises",
        lambda a, b: all_of(reproduces(a, 0.49), reproduces(b, 0.002)) if a and b else None,
    )
    rows += grid_rows(
        res,
        "2b",
        "model.heads",
        (1, 64),
        "2b: m = 16, MSE 1.16 -> 1e-6 as H rises",
        lambda a, b: all_of(reproduces(a, 1.16), reproduces_bound(b, 1e-5)) if a and b else None,
    )
    table = Table(
        "What the paper's numbers would have needed: each setting's MSE at the paper's cells (median [range] "
        "over seeds) and whether it reproduces the paper's number (within a decade of it, every seed; "
        "'<' as a bound; for 4a and 4b the best over H)",
        ["paper's number", "setting", "ours", "reproduces"],
        rows,
    )
    found = [f"{r[0].split(':')[0]} by {r[1]}" for r in rows if r[3] == "yes"]
    ours = ("reproduced only by: " + "; ".join(found)) if found else "no setting swept reproduces any of them"
    return [table], Verdict(None, ours, judged=False)


EXP_FORENSICS = Experiment(name="forensics", specs=specs, analyse=analyse, figure=lambda res, path: None)
