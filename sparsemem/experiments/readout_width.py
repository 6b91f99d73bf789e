"""2a's diagnostics: does FFN width matter once the readout needs it?

The paper's 2a readout f(x_99) = sum_k relu(w_k x_99) on Boolean tokens takes two values, so it is affine in
x_99 and width has nothing to buy (experiments/affine.py). The diagnostic runs the same lag and grid of H and m
under learned RPE (the one RPE whose heads single out lag 901, 1b) on tokens uniform on [-1, 1] with a readout
that needs width: ``relu_spline``, the piecewise-linear function through 64 random knots (exactly 64 ReLU units
with random biases, tasks/readouts.py). Beside each m sits its width floor: the best fit found of f by m ReLU
units given x_99 exactly (theory/width.py), computed per task draw. A second arm trains the same model (H = 1)
on the spline of its own token (lag 0: nothing to extract, the residual path carries it), so that what
training reaches with the token given sits beside what it reaches when a head must extract it.

Stores made before this diagnostic hold an earlier one instead (the paper's f on uniform tokens, where two
units suffice); its table and its reading of the m = 16 plateau as an optimisation finding stay.
"""

from __future__ import annotations

from .affine import nonaffine_share
from .base import INCONCLUSIVE, Results, Spread, Table, all_of, diagnosis, fmt, fmt_spread, min_of, seeds_of, spec
from .floors import readout_target, width_spec
from .grid import TASK_2A, VARIANTS, grid_hm, grid_of, hm_spec, hm_table, rpe_where, value
from .outcomes import UNTESTABLE, Part, from_truth
from .rules import TAU, compared, helps, size
from .toy import base, cell

TASK_2A_SPLINE = {**TASK_2A, "input": "uniform", "readout": {"kind": "relu_spline", "width": 64}}
TASK_2A_UNIFORM = {**TASK_2A, "input": "uniform"}  # the earlier diagnostic, read from older stores
TASK_2A_SPLINE_OWN = {**TASK_2A_SPLINE, "lags": [0]}  # the token given: f(x_t) of the current token


def spline_specs(profile: str):
    own = spec(
        "2a",
        base(profile, TASK_2A_SPLINE_OWN, {}),
        {"model.heads": [1], "model.ffn_width": grid_hm(profile)[1]},
        seeds=seeds_of(profile),
        cases=[VARIANTS["learned"]],
    )
    return [hm_spec("2a", profile, TASK_2A_SPLINE, rpes=["learned"]), own]


def spline_floors(profile: str):
    """The width floors of each task draw of the diagnostic, at the profile's widths."""
    ms = grid_hm(profile)[1]
    return [width_spec({**TASK_2A_SPLINE, "seed": s}, ms) for s in seeds_of(profile)]


def sections(res: Results) -> tuple[list[Table], list[str]]:
    """The diagnostic tables and lines for whichever 2a diagnostics the store holds."""
    tables, lines = [], []
    spline = res.subset(res.select({"task.readout.kind": "relu_spline"}))
    if spline.rows:
        t, more = spline_section(spline)
        tables += t
        lines += more
    uniform = res.subset(res.select({"task.input.kind": "uniform", "task.readout.kind": "relu_net"}))
    if uniform.rows:
        Hs, ms = grid_of(uniform)
        title = (
            "Diagnostic: the paper's f with tokens uniform on [-1, 1], learned RPE: MSE (relative MSE), rows H, "
            "columns m"
        )
        tables.append(hm_table(uniform, "learned", Hs, ms, title=title))
        lines.append(diagnostic_uniform(uniform, ms[0]))
    return tables, [line for line in lines if line]


def width_floor(res: Results, m: int):
    """The width floor at m over the task draws among the rows (a Spread over draws), or None."""
    targets = {readout_target(r["config"]["task"]) for r in res.rows}
    got = [res.floor("width", t, "any", m) for t in sorted(targets)]
    return Spread(got) if got and None not in got else None


def spline_section(res: Results) -> tuple[list[Table], list[str]]:
    own = res.subset([r for r in res.rows if r["config"]["task"]["lags"] == [0]])
    res = res.subset([r for r in res.rows if r["config"]["task"]["lags"] != [0]])
    Hs, ms = grid_of(res)
    table = hm_table(
        res,
        "learned",
        Hs,
        ms,
        title=(
            "Diagnostic: a readout that needs width (a 64-knot random linear spline of x_99, tokens uniform on "
            "[-1, 1]), learned RPE: MSE (relative MSE), rows H, columns m; row 'token given': the same model "
            "(H = 1) trained on f of its own token (lag 0); last row: the width floor, the best fit found of f by "
            "m ReLU units given x_99 exactly, as a relative MSE (an upper bound on that optimum; values near "
            "1e-20 are 0 up to float64 rounding), over task draws"
        ),
    )
    if own.rows:
        where = {"model.heads": 1, "model.attention": "dp_free"}
        given = [cell(own, rpe_where("learned", {**where, "model.ffn_width": m})) for m in ms]
        table.rows.append(["token given", *given])
    table.rows.append(["width floor"] + [fmt_spread(width_floor(res, m)) for m in ms])
    return [table], [diagnostic_spline(res, Hs, ms), diagnostic_given(res, own, Hs, ms)]


def diagnostic_given(res: Results, own: Results, Hs, ms) -> str:
    """Where the lag-901 cells miss the width floor, the explanation 'training does not fit the spline
    within the step budget even with the token given (optimisation, not extraction)' predicts that the
    token-given cell ends within 2x of the best lag-901 cell over H, at every m, over every pairing of seeds."""
    outcomes, measured = [], []
    for m in ms:
        given = value(own, "learned", 1, m)
        best = min_of(value(res, "learned", H, m) for H in Hs)
        if given is None or best is None:
            continue
        outcomes.append(all_of(given <= 2 * best, best <= 2 * given))
        measured.append(f"m={m}: token given {fmt_spread(given)}, best lag-901 cell {fmt_spread(best)}")
    if not outcomes:
        return ""
    return diagnosis(
        "(the lag-901 cells are held back by fitting the spline within the step budget, not by extracting "
        "x_99) that the same model given the token itself (lag 0, H = 1) ends within 2x of the best lag-901 "
        "cell over H, at every m, over every pairing of seeds",
        "; ".join(measured),
        all_of(*outcomes),
    )


def spline_part(res: Results):
    """2a judged where the task can decide it: on the spline readout, raising m from the smallest to the
    largest helps at every H under learned RPE (direction over every pairing of seeds, the small-m cell
    unsolved), if the width floor at the smallest m is above TAU for every task draw (else this task cannot
    decide it either). Returns (Part, compared entries, size at the largest H), or None without its runs."""
    spline = res.subset(res.select({"task.readout.kind": "relu_spline"}))
    spline = spline.subset([r for r in spline.rows if r["config"]["task"]["lags"] != [0]])
    if not spline.rows:
        return None
    Hs, ms = grid_of(spline)
    floor = width_floor(spline, ms[0])
    pairs = {H: (value(spline, "learned", H, ms[0]), value(spline, "learned", H, ms[-1])) for H in Hs}
    pairs = {H: p for H, p in pairs.items() if None not in p}
    if floor is None or not pairs:
        return None
    name = f"a readout that needs width (64-knot spline of x_99, uniform tokens, learned RPE), m = {ms[0]} -> {ms[-1]}"
    entries = [compared(f"variant H={H} m={m}", c) for H, p in pairs.items() for m, c in zip((ms[0], ms[-1]), p)]
    cells = [e["name"] for e in entries]
    top = pairs[max(pairs)]
    if (floor > TAU) is not True:
        reason = f"its width floor at m = {ms[0]} ({fmt_spread(floor)}) is not above {fmt(TAU)} for every draw"
        return Part(name, UNTESTABLE, reason, cells), entries, size(*top)
    outcome, reason = from_truth(all_of(*(helps(a, b, TAU) for a, b in pairs.values())), "learned only")
    reason += f"; m = {ms[0]} / m = {ms[-1]} at H = {max(pairs)}: {fmt_spread(size(*top))}"
    return Part(name, outcome, reason, cells, "learned only"), entries, size(*top)


def diagnostic_spline(res: Results, Hs, ms) -> str:
    """The explanation of 2a's missing width effect, 'on Boolean tokens the paper's f is affine in x_99, so
    width has nothing to buy', predicts that where the readout needs width (its width floor at the smallest m
    above TAU) raising m from the smallest to the largest helps at every H (the house rule: the small-m cell
    unsolved, the large-m cell better over every pairing of seeds)."""
    small, large = width_floor(res, ms[0]), width_floor(res, ms[-1])
    if small is None or large is None:
        return ""
    outcomes, measured = [], []
    for H in Hs:
        a, b = value(res, "learned", H, ms[0]), value(res, "learned", H, ms[-1])
        if a is None or b is None:
            continue
        outcomes.append(helps(a, b, TAU))
        measured.append(f"H={H}: m={ms[0]} {fmt_spread(a)}, m={ms[-1]} {fmt_spread(b)}")
    if not outcomes:
        return ""
    return diagnosis(
        "(our 2a lacks the width effect because on Boolean tokens the paper's f is affine in x_99, so width has "
        f"nothing to buy) that where the readout needs width (width floor at m={ms[0]} {fmt_spread(small)}, at "
        f"m={ms[-1]} {fmt_spread(large)}), raising m from {ms[0]} to {ms[-1]} helps at every H under learned RPE "
        f"(m={ms[0]} unsolved, relative MSE > {fmt(TAU)}, and m={ms[-1]} better over every pairing of seeds)",
        "; ".join(measured),
        all_of(*outcomes),
    )


def diagnostic_uniform(uniform: Results, m: int) -> str:
    """The explanation 'on uniform tokens the narrowest FFN fails by optimisation, not capacity: its
    readout ends affine in x_99 (f = A relu(x) + B relu(-x) needs two units)' predicts that every m = 16
    cell sits at the non-affine share of Var(y) of its task draw (affine.py), within 5%, at every H."""
    ratios, shares = [], {}  # one share per task draw
    for row in uniform.select({"model.ffn_width": m}):
        if row["status"] == "done" and row.get("val_rel") is not None:
            task = row["config"]["task"]
            seed = task.get("seed", 0)
            if seed not in shares:
                shares[seed] = nonaffine_share(task)
            ratios.append(row["val_rel"] / shares[seed])
    if not ratios:
        return ""
    close = [abs(r - 1) <= 0.05 for r in ratios]
    outcome = True if all(close) else False if not any(close) else INCONCLUSIVE
    return diagnosis(
        f"(the m = {m} cells fail by optimisation: their readout ends affine in x_99, where f = A relu(x) + "
        f"B relu(-x) needs only two units) that every m = {m} cell's relative MSE is the non-affine share of "
        "Var(y) of its task draw, (A + B)^2 / ((A + B)^2 + 4 (A - B)^2), within 5%",
        f"relative MSE over that share {min(ratios):.3f} to {max(ratios):.3f} in {len(ratios)} runs",
        outcome,
    )
