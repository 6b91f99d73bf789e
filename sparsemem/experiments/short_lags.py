"""2b's discriminating variant: memories that one head of the paper's RPE class cannot reach and a few can.

On the paper's task (lags 952, 944, 901 of T = 1000) no RPE separates one head from many: one learned head
already solves the sum, and lin and log reach none of the lags at any H run. This variant, chosen from its
floors and predicted before any of its runs (docs/reproduction.md), asks the same question where the paper's
class can answer it: y = x_{t-1} + x_{t-2} + x_{t-3} at T = 32, whose best fits found by one lin / log head
leave 0.17 / 0.30 of Var(y) and by four heads 1.0e-9 / 4.2e-8. The prediction: one head ends at relative MSE
0.1 or more, 8 heads at 1e-4 or less, under lin and under log, every seed; raising m gives no gain.
"""

from __future__ import annotations

from .base import Results, all_of, fmt_spread, seeds_of, spec
from .claims import NO_GAIN
from .grid import VARIANTS, grid_hm, grid_of, hm_table, value
from .outcomes import Part, from_truth
from .rules import TAU, compared, helps, no_gain, scoped, size
from .toy import base, fixed_task

SHORT_T = 32
SHORT_LAGS = [1, 2, 3]
SHORT_HEADS = [1, 2, 4, 8]
SHORT_RPES = ("lin", "log")
TASK_2B_SHORT = {**fixed_task(SHORT_LAGS, "sum"), "seq_len": SHORT_T}


def short_spec(profile: str):
    """The variant's grid: H in SHORT_HEADS, the profile's narrowest and widest FFN, lin and log."""
    ms = grid_hm(profile)[1]
    return spec(
        "2b",
        base(profile, TASK_2B_SHORT, {"rpe_max_distance": SHORT_T}),
        {"model.heads": SHORT_HEADS, "model.ffn_width": [ms[0], ms[-1]]},
        seeds=seeds_of(profile),
        cases=[VARIANTS[r] for r in SHORT_RPES],
    )


def is_short(row: dict) -> bool:
    task = row["config"]["task"]
    return task.get("seq_len") == SHORT_T and task.get("lags") == SHORT_LAGS


def split(res: Results) -> tuple[Results, Results]:
    """(the paper's task's rows, the variant's rows)."""
    return res.subset([r for r in res.rows if not is_short(r)]), res.subset([r for r in res.rows if is_short(r)])


def short_tables(short: Results) -> list:
    if not short.rows:
        return []
    Hs, ms = grid_of(short)
    title = "2b variant, y = x_(t-1) + x_(t-2) + x_(t-3) at T = 32, {} RPE: MSE (relative MSE), rows H, columns m"
    return [hm_table(short, r, Hs, ms, title=title.format(r)) for r in SHORT_RPES]


def short_part(short: Results):
    """2b judged on the variant, per RPE of the paper's class: raising H from the fewest to the most heads
    helps at the narrowest FFN (direction, the one-head cell unsolved) and raising m at the most heads gives
    no gain (not NO_GAIN times better). Returns (Part, compared entries, size under lin), or None."""
    if not short.rows:
        return None
    Hs, ms = grid_of(short)
    per, entries, said, sizes = {}, [], [], {}
    for r in SHORT_RPES:
        one, top, wide = value(short, r, Hs[0], ms[0]), value(short, r, Hs[-1], ms[0]), value(short, r, Hs[-1], ms[-1])
        if None in (one, top, wide):
            continue
        per[r] = all_of(helps(one, top, TAU), no_gain(top, wide, TAU, NO_GAIN))
        sizes[r] = size(one, top)
        entries += [
            compared(f"variant {r} H={Hs[0]} m={ms[0]}", one),
            compared(f"variant {r} H={Hs[-1]} m={ms[0]}", top),
        ]
        entries += [compared(f"variant {r} H={Hs[-1]} m={ms[-1]}", wide)]
        cells = f"H={Hs[0]} {fmt_spread(one)} -> H={Hs[-1]} {fmt_spread(top)} at m={ms[0]}"
        said.append(f"{r}: {cells}, m={ms[-1]} {fmt_spread(wide)}")
    if not per:
        return None
    outcome, reason = from_truth(*scoped(per))
    name = f"three short lags (y = x_(t-1) + x_(t-2) + x_(t-3), T = {SHORT_T}), H = {Hs[0]} -> {Hs[-1]}"
    part = Part(name, outcome, f"{reason}; relative MSE " + "; ".join(said), [e["name"] for e in entries])
    return part, entries, sizes.get("lin")
