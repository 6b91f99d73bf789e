"""1a's diagnostics: what one layer can read of a nested task, swept over the number of candidate lags.

The synthetic 1a task ties (experiments/synthetic.py): both the deeper and the wider model solve it. The
explanation stated for the tie is that with Boolean tokens the memories take few lags, so the wider
model's heads can read every lag a memory may take. Its test (predictions written before the runs):

- the *fixed-lag oracle floor* (theory/oracle.py): the least error of one layer whose H heads each read
  one lag exactly, with the best readout after them, per task draw; 0 where the candidate lags are at
  most H. Beside it the *gated* floor, where a head may be switched on or off by x_t (Thm 4.1's gate).
- a sweep of the lag bound (4, 8, 16, 24 with five token values at T = 32, 63 with six at T = 64; K = 1;
  4 to 29 candidate lags) with four arms at matched parameters: base (L = 1, H = 2), +layer (L = 2),
  +heads (L = 1, H = 8) and +width (L = 1, H = 2, a wider FFN), 3 seeds each, seed s drawing task s.
  Bound 63 was added after the others had run; its prediction, written before its runs from its floors
  (task draws 0-2: 28-29 candidate lags, fixed-lag floor 0.82-0.85 at H = 2 and 0.23-0.34 at H = 8,
  gated floor 0 at H = 8), is the same rule: +heads at or above half its 8-head floor, +width at or
  above half its 2-head floor, +layer below the 8-head floor.
- a normalization-free TMX arm (Prop 4.3) counts only once it trains: its learning rate and p's
  initialisation are swept (one seed) before any comparison is read from it.
"""

from __future__ import annotations

import math
import statistics

from ..config import task_config
from ..plotting import pyplot, save_figure
from ..theory.oracle import oracle_floors
from .base import Experiment, Results, Table, all_of, fmt, fmt_spread, seeds_of, spec, train_settings
from .depth_tmx import tmx_settings, tmx_sweep
from .nested_construction import compute_construction, construction_table
from .outcomes import UNTESTABLE, Part, from_truth
from .rules import TAU, beats, compared, direction
from .synthetic import (
    BASE_LH,
    MODEL_1A,
    MODEL_TMX,
    NESTED_TASK,
    T_SYN,
    WIDE_TASK,
    analyse_main,
    arm_params,
    arms,
    params,
    specs_main,
    variants,
)

LAG_BOUNDS = (4, 8, 16, 24, 63)
# the longest bound: six token values (the most the oracle's enumeration allows) and T = 64, for 28-29
# candidate lags; its models get a learned RPE over 64 distances, so its arms match their own parameters
LONG_BOUND, LONG_T, LONG_VALUES = 63, 64, [-1, -0.5, -0.25, 0.25, 0.5, 1]


def lag_task(bound: int) -> dict:
    if bound < T_SYN:
        return {**WIDE_TASK, "lags": [bound, bound]}
    long = {"seq_len": LONG_T, "input": {"kind": "discrete", "values": LONG_VALUES}}
    return {**WIDE_TASK, **long, "lags": [bound, bound]}


def lag_model(bound: int) -> dict:
    return MODEL_1A if bound < T_SYN else {**MODEL_1A, "rpe_max_distance": LONG_T}


def task_seeds(rows: list[dict]) -> list[int]:
    """The task draws the rows trained on."""
    return sorted({r["config"]["task"]["seed"] for r in rows}) or [0]


def specs(profile: str) -> list:
    seeds = seeds_of(profile)
    out = specs_main(profile) + [
        spec(
            "1a_synthetic",
            {"task": lag_task(b), "model": lag_model(b), "train": train_settings(profile)},
            {},
            seeds=seeds,
            cases=list(arms(lag_model(b)).values()),
        )
        for b in LAG_BOUNDS
    ]
    tmx_cases = [{**arm, **s} for arm in arms(MODEL_TMX, width=False).values() for s in tmx_settings()]
    out.append(
        spec(
            "1a_synthetic",
            {"task": WIDE_TASK, "model": MODEL_TMX, "train": train_settings(profile)},
            {},
            seeds=seeds[:1],
            cases=tmx_cases,
        )
    )
    return out


def compute(profile: str) -> dict:
    """Oracle floors per task draw: the main nested task and every lag bound, at the 1-layer arms' head counts;
    the float64 construction of two layers on the main task (nested_construction.py)."""
    heads = sorted(
        {
            a["model.heads"]
            for m in (MODEL_1A, MODEL_TMX, lag_model(LONG_BOUND))
            for a in arms(m).values()
            if a["model.layers"] == 1
        }
    )
    tasks = {"main": NESTED_TASK, **{str(b): lag_task(b) for b in LAG_BOUNDS}}
    return {
        "heads": heads,
        "floors": {
            name: {str(s): oracle_floors(task_config({**t, "seed": s}), heads) for s in seeds_of(profile)}
            for name, t in tasks.items()
        },
        "construction": compute_construction(profile),
    }


def floor_of(res: Results, task: str, seed: int, heads: int, kind: str = "fixed"):
    """A stored oracle floor (relative MSE) for one task draw; None where the store holds none."""
    found = ((res.computed or {}).get("floors", {}).get(task, {})).get(str(seed))
    if found is None:
        return None
    value = found[kind].get(str(heads))
    return value["rel"] if kind == "fixed" else value


def _per_seed(res: Results, where: dict) -> dict[int, float]:
    return {
        r["config"]["task"]["seed"]: r["val_rel"]
        for r in res.select(where)
        if r["status"] == "done" and r.get("val_rel") is not None
    }


def _floor_spread(res: Results, task: str, seeds: list[int], heads: int, kind: str = "fixed") -> str:
    vals = [v for v in (floor_of(res, task, s, heads, kind) for s in seeds) if v is not None]
    if not vals:
        return "—"
    vals.sort()
    return f"{fmt(statistics.median(vals))} [{fmt(vals[0])}, {fmt(vals[-1])}]"


def _held(res: Results, where: dict, task: str, heads: int) -> object:
    """Prediction per arm and bound: an unsolved floor holds the arm at or above half of it (every seed);
    a zero floor lets it solve (every seed at or below tau). None: no runs or floors."""
    runs = _per_seed(res, where)
    checks = []
    for seed, rel in runs.items():
        f = floor_of(res, task, seed, heads)
        if f is None:
            return None
        checks.append(rel <= TAU if f <= 1e-12 else rel >= 0.5 * f)
    return all(checks) if checks else None


def lag_sweep(res: Results) -> tuple[list[Table], str]:
    """The lag-bound sweep beside the oracle floors, and the prediction's outcome."""
    rows, outcomes = [], {"+heads": [], "+width": [], "+layer": []}
    seeds, heads_h = task_seeds(res.rows), variants()["+heads"][1]
    for b in LAG_BOUNDS:
        sub = res.subset(res.select({"task.lags": [b, b], "task.input.kind": "discrete", "model.attention": "dp"}))
        if not sub.rows:
            continue
        counts = (
            sorted(len(res.computed["floors"][str(b)][str(s)]["candidate_lags"]) for s in seeds)
            if (res.computed and str(b) in res.computed.get("floors", {}))
            else []
        )
        cells, row_arms = {}, arms(lag_model(b))
        for name, arm in row_arms.items():
            cells[name] = sub.spread("val_rel", arm)
            if name in ("+heads", "+width"):
                outcomes[name].append((b, _held(sub, arm, str(b), arm["model.heads"])))
        f8 = [floor_of(res, str(b), s, heads_h) for s in seeds]
        if cells["+layer"] is not None and all(f is not None for f in f8) and max(f8) > 1e-12:
            below = all(
                rel < floor_of(res, str(b), s, heads_h) for s, rel in _per_seed(sub, row_arms["+layer"]).items()
            )
            outcomes["+layer"].append((b, below))
        rows.append(
            [
                b,
                f"{lag_task(b)['seq_len']} / {len(lag_task(b)['input']['values'])}",
                "—" if not counts else (str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"),
                _floor_spread(res, str(b), seeds, BASE_LH[1]),
                _floor_spread(res, str(b), seeds, heads_h),
                _floor_spread(res, str(b), seeds, heads_h, "gated"),
            ]
            + [fmt_spread(cells[n]) for n in row_arms]
        )
    long = arms(lag_model(LONG_BOUND))
    table = Table(
        "Diagnostic: lag bound swept (K = 1; five token values at T = 32, six at T = 64): relative MSE [range "
        "over seeds] per arm at matched parameters ("
        + ", ".join(f"{n} {arm_params(a)} / {arm_params(long[n], lag_model(LONG_BOUND))}" for n, a in arms().items())
        + " parameters at T = 32 / 64), beside the oracle floors of one layer (fixed lags: H heads each read one "
        "lag exactly, best readout; gated: heads switched by x_t); median [range] over task draws",
        [
            "lag bound",
            "T / token values",
            "candidate lags",
            f"fixed-lag floor, H = {BASE_LH[1]}",
            f"fixed-lag floor, H = {heads_h}",
            f"gated floor, H = {heads_h}",
        ]
        + list(arms()),
        rows,
    )
    return [table], _lag_text(outcomes)


def _lag_text(outcomes: dict) -> str:
    def said(pairs):
        done = [(b, v) for b, v in pairs if v is not None]
        if not done:
            return "not run"
        ok = [b for b, v in done if v]
        return f"{len(ok)} of {len(done)} lag bounds" + (f" (bounds {', '.join(map(str, ok))})" if ok else "")

    return (
        "the explanation (one layer is limited by the lags its heads can reach; the Boolean task's memories "
        "take few enough lags for 8 heads) predicts that +heads solves (<= 1e-4) where its fixed-lag floor "
        "is 0 and ends at or above half that floor elsewhere, every seed; that +width (2 heads) ends at or "
        "above half its 2-head floor; and that +layer, which two layers can express exactly (Thm 4.4), ends "
        "below the +heads floor where that floor is positive; measured: +heads as predicted at "
        f"{said(outcomes['+heads'])}; +width at {said(outcomes['+width'])}; +layer below the +heads floor at "
        f"{said(outcomes['+layer'])}"
    )


def lag_variant(res: Results):
    """1a judged where one layer cannot read every lag: at each lag bound whose fixed-lag floor at the +heads
    arm's heads is positive for every task draw, +layer beats +heads (+heads unsolved, +layer lower over
    every pairing of seeds; learned RPE). Returns (Part, compared entries), or None without such a bound."""
    seeds, heads_h = task_seeds(res.rows), variants()["+heads"][1]
    truths, entries, said, gated = [], [], [], []
    for b in LAG_BOUNDS:
        floors = [floor_of(res, str(b), s, heads_h) for s in seeds]
        if not floors or None in floors or min(floors) <= 1e-12:
            continue
        gated += [floor_of(res, str(b), s, heads_h, "gated") for s in seeds]
        sub = res.subset(res.select({"task.lags": [b, b], "task.input.kind": "discrete", "model.attention": "dp"}))
        cells = {n: sub.spread("val_rel", a) for n, a in arms(lag_model(b)).items() if n in ("+layer", "+heads")}
        if None in cells.values():
            continue
        truths.append(beats(cells["+layer"], cells["+heads"], TAU))
        entries += [compared(f"bound {b} {n}", c) for n, c in cells.items()]
        said.append(f"bound {b}: " + direction("+layer", cells["+layer"], "+heads", cells["+heads"]))
    if not truths:
        return None
    outcome, reason = from_truth(all_of(*truths), "learned only")
    name = "lag bounds where one layer cannot read every lag (+heads floor > 0)"
    if gated and None not in gated and max(gated) <= 1e-12:  # the arms are DP: their heads can gate by x_t
        outcome = UNTESTABLE
        reason = (
            f"the gated floor of one layer with {heads_h} heads (heads switched by x_t, as DP heads can be) is "
            f"{fmt(max(gated))} at every such bound, so +heads can still solve them; as trained"
        )
    return Part(name, outcome, f"{reason}; " + "; ".join(said), [e["name"] for e in entries], "learned only"), entries


def main_floor(res: Results):
    """The main task's fixed-lag floor at the +heads arm's heads, the largest over task draws (None: none)."""
    found = [floor_of(res, "main", s, variants()["+heads"][1]) for s in task_seeds(res.rows)]
    return max(found) if found and None not in found else None


def main_floor_text(res: Results) -> str:
    """The main task's oracle floors at the wider model's heads (the tie's explanation, measured)."""
    seeds, h = task_seeds(res.rows), variants()["+heads"][1]
    f = _floor_spread(res, "main", seeds, h)
    f2 = _floor_spread(res, "main", seeds, BASE_LH[1])
    if f == "—":
        return ""
    return (
        f"The fixed-lag oracle floor of one layer on this task (theory/oracle.py) is {f} at H = {h} and {f2} at "
        f"H = {BASE_LH[1]} (median [range] over task draws): {h} heads can read every lag a memory takes."
    )


def analyse(res: Results):
    lag_tables, lag_text = lag_sweep(res)
    tmx_tables, tmx_text = tmx_sweep(res)
    built_tables, built_text = construction_table(res)
    diagnostic = "\n".join(t for t in (lag_text, tmx_text) if t)
    floor_text = " ".join(t for t in (main_floor_text(res), built_text) if t)
    tables = built_tables + lag_tables + tmx_tables
    return analyse_main(res, tables, diagnostic, floor_text, main_floor(res), lag_variant(res))


def figure(res: Results, path: str) -> None:
    """Left: the Boolean nested task, bars at the median relative MSE with whiskers over seeds. Right, where
    it ran: the lag-bound sweep, each arm's median against the lag bound, the oracle floors dashed."""
    plt = pyplot()
    sweep = res.select({"task.input.kind": "discrete", "model.attention": "dp"})
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(11 if sweep else 5.5, 3.8), squeeze=False)
    colors = {"base": "grey", "+layer": "tab:blue", "+heads": "tab:orange", "+width": "tab:green"}
    ax, main = axes[0][0], res.subset(res.select({"task.input.kind": "rademacher"}))
    labels, vals, lo, hi = [], [], [], []
    for label, (L, H) in variants().items():
        s = main.spread("val_rel", {"model.layers": L, "model.heads": H})
        labels.append(f"{label}\nL={L}, H={H}\n{params(L, H)} params")
        vals.append(s.median if s is not None else math.nan)
        lo.append(s.median - s.lo if s is not None else 0.0)
        hi.append(s.hi - s.median if s is not None and math.isfinite(s.hi) else 0.0)
    ax.bar(range(len(labels)), vals, color=[colors[k] for k in variants()], yerr=[lo, hi], capsize=4)
    ax.set_xticks(range(len(labels)), labels, fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("relative MSE")
    ax.set_title("1a (synthetic): depth against heads")
    if sweep:
        ax, sub = axes[0][1], res.subset(sweep)
        seeds = task_seeds(sweep)
        for name, arm in arms().items():
            pts = [(b, sub.spread("val_rel", {**arms(lag_model(b))[name], "task.lags": [b, b]})) for b in LAG_BOUNDS]
            pts = [(b, c) for b, c in pts if c is not None]
            ax.errorbar(
                [b for b, _ in pts],
                [c.median for _, c in pts],
                yerr=[[c.median - c.lo for _, c in pts], [max(0.0, c.hi - c.median) for _, c in pts]],
                color=colors[name],
                marker="o",
                capsize=3,
                label=f"{name} ({arm_params(arm)} params at T = {T_SYN})",
            )
        for H, style in ((BASE_LH[1], ":"), (variants()["+heads"][1], "--")):
            fl = [(b, [floor_of(res, str(b), s, H) for s in seeds]) for b in LAG_BOUNDS]
            fl = [(b, statistics.median(v)) for b, v in fl if v and None not in v]
            ax.plot([b for b, _ in fl], [max(v, 1e-7) for _, v in fl], "k" + style, label=f"fixed-lag floor, H = {H}")
        ax.set_yscale("log")
        ax.set_xlabel(f"lag bound (candidate lags grow with it; bound {LONG_BOUND} at T = {LONG_T})")
        ax.set_ylabel("relative MSE")
        ax.set_title("diagnostic: lag bound swept (floors at 1e-7 mean 0)")
        ax.legend(fontsize=7)
    save_figure(fig, path)


EXP_1A = Experiment(
    name="1a_synthetic",
    specs=specs,
    analyse=analyse,
    figure=figure,
    compute=compute,
    compute_keys=("heads", "floors", "construction"),
)
