"""Verdict rules with absolute levels (docs/reproduction.md: judged over seeds and against absolute levels).

Every rule answers over seeds in three ways (True, False, INCONCLUSIVE; None without runs), and none
of them lets a ratio between two solved cells decide anything:

- a cell is *solved* when its relative MSE is at most the experiment's level ``tau`` for every seed, and
  *unlearned* when it is at least ``UNLEARNED`` for every seed (it explains under a tenth of the target's
  variance); two solved cells tie, and so do two unlearned ones: a tie decides nothing (INCONCLUSIVE);
- ``helps(small, large)``: raising X helps when the small-X cell is unsolved and the large-X cell is
  better over every pairing of seeds (direction); a small-X cell that is already solved leaves nothing for
  X to help (False), whatever the ratio of the two tiny errors. A claim whose words need a size ("no
  gain", "marginal") passes its own ``factor`` and says so in its rule; none is shared;
- ``size(small, large)``: the effect's size, a ratio of medians with its range over pairings, shown
  beside the paper's own ratio;
- ``beats(a, b)``: arm a beats arm b (DP against DP-free, a layer against heads) by direction, b unsolved;
- ``reproduces(ours, paper)``: our number within an order of magnitude of the paper's, every seed;
- ``scoped``: a claim judged under each RPE, summarised over the paper's RPE family and outside it,
  so that "holds" says whether it rests on an RPE the paper has.
"""

from __future__ import annotations

import math
from typing import Optional

from .verdicts import INCONCLUSIVE, Spread, all_of, any_of, fmt

TAU = 1e-4  # the default solved level (relative MSE): a round level far above float32's 1e-7
UNLEARNED = 0.9  # at or above this relative MSE a cell explains under a tenth of the target's variance
PAPER_FAMILY = ("lin", "log", "t5", "kerple_log", "alibi")  # the paper's RPEs (docs/models.md)


def negate(truth):
    """Kleene NOT (None stays None)."""
    if truth is None:
        return None
    return INCONCLUSIVE if truth is INCONCLUSIVE else not truth


def solved(cell: Optional[Spread], tau: float = TAU):
    """Every seed at or below tau: True; every seed above: False; else INCONCLUSIVE."""
    return None if cell is None else cell <= tau


def unlearned(cell: Optional[Spread]):
    """Every seed at or above UNLEARNED: True; every seed below: False; else INCONCLUSIVE."""
    return None if cell is None else cell >= UNLEARNED


def tie(a: Optional[Spread], b: Optional[Spread], tau: float = TAU) -> bool:
    """Both cells solved, or both unlearned, for every seed: their ratio is noise, not evidence."""
    if a is None or b is None:
        return False
    return (solved(a, tau) is True and solved(b, tau) is True) or (unlearned(a) is True and unlearned(b) is True)


def helps(small: Optional[Spread], large: Optional[Spread], tau: float = TAU, factor: float = 1.0):
    """Raising X helps: the small-X cell unsolved (above tau, every seed) and the large-X cell better over
    every pairing of seeds (``factor`` times better where a claim's words ask for a size); two unlearned
    cells tie (INCONCLUSIVE)."""
    if small is None or large is None:
        return None
    if unlearned(small) is True and unlearned(large) is True:
        return INCONCLUSIVE
    return all_of(small > tau, factor * large < small)


def no_gain(small: Optional[Spread], large: Optional[Spread], tau: float = TAU, factor: float = 2.0):
    """Raising X gives no gain: not ``helps`` at ``factor`` (an already solved small-X cell: True)."""
    return negate(helps(small, large, tau, factor))


def beats(a: Optional[Spread], b: Optional[Spread], tau: float = TAU, factor: float = 1.0):
    """Arm a beats arm b: b unsolved and a better over every pairing (``factor`` times better where a
    claim's words ask for a size); two solved or two unlearned arms tie (INCONCLUSIVE)."""
    if a is None or b is None:
        return None
    if tie(a, b, tau):
        return INCONCLUSIVE
    return all_of(b > tau, factor * a < b)


def size(worse: Optional[Spread], better: Optional[Spread], tau: float = TAU) -> Optional[Spread]:
    """The effect's size: worse / better, the ratio of medians and its range over every pairing of seeds;
    None for a tie (two solved or two unlearned cells: their ratio is noise)."""
    if worse is None or better is None or tie(worse, better, tau):
        return None
    return worse / better


def direction(a_name: str, a: Optional[Spread], b_name: str, b: Optional[Spread], tau: float = TAU) -> str:
    """Which of two cells is lower, in words, over every pairing of seeds (a tie named as one)."""
    if a is None or b is None:
        return "not run"
    if tie(a, b, tau):
        return f"tie: {a_name} and {b_name} both " + ("solved" if solved(a, tau) is True else "unlearned")
    if (a < b) is True:
        return f"{a_name} lower at every pairing of seeds"
    if (b < a) is True:
        return f"{b_name} lower at every pairing of seeds"
    return f"mixed: {a_name} lower at some pairings of seeds, {b_name} at others"


def reproduces(ours: Optional[Spread], paper: float, decades: float = 1.0):
    """Ours within ``decades`` orders of magnitude of the paper's number, for every seed."""
    if ours is None:
        return None
    return all_of(ours >= paper / 10**decades, ours <= paper * 10**decades)


def reproduces_bound(ours: Optional[Spread], bound: float):
    """The paper reports '< bound': ours at or below it for every seed."""
    return None if ours is None else ours <= bound


def count_cells(pairs, tau: float = TAU, factor: float = 1.0) -> tuple[int, int]:
    """(k, n): of n (small, large) cell pairs, k where ``helps`` holds over every pairing of seeds."""
    known = [(a, b) for a, b in pairs if a is not None and b is not None]
    return sum(helps(a, b, tau, factor) is True for a, b in known), len(known)


def scoped(per_rpe: dict) -> tuple[object, str]:
    """A claim's truth from its truth under each RPE label, and its scope in words.

    Holds under some RPE of the paper's family: holds ("paper's RPE family: lin"). Else holds outside it:
    holds, scope "learned only". Else fails under the family: does not hold, scope the RPEs it fails
    under. Else inconclusive, scope the RPEs judged (None when no RPE was judged)."""
    fam = {r: t for r, t in per_rpe.items() if r in PAPER_FAMILY and t is not None}
    out = {r: t for r, t in per_rpe.items() if r not in PAPER_FAMILY and t is not None}
    f = any_of(*fam.values()) if fam else None
    o = any_of(*out.values()) if out else None
    if f is True:
        return True, "paper's RPE family: " + ", ".join(r for r, t in fam.items() if t is True)
    if o is True:
        return True, ", ".join(r for r, t in out.items() if t is True) + " only"
    if f is False or (f is None and o is False):
        return False, ", ".join(fam if o is INCONCLUSIVE else [*fam, *out])
    if f is None and o is None:
        return None, ""
    return INCONCLUSIVE, ", ".join([*fam, *out])


def compared(name: str, cell: Optional[Spread]) -> dict:
    """A compared number for verdicts.json: its median and range over seeds."""
    if cell is None:
        return {"name": name, "median": None, "lo": None, "hi": None, "seeds": 0, "falling": 0, "short": 0}

    def num(v):
        return None if v is None or (isinstance(v, float) and math.isinf(v)) else v

    out = {"name": name, "median": num(cell.median), "lo": num(cell.lo), "hi": num(cell.hi), "seeds": cell.seeds}
    return {**out, "falling": cell.falling, "short": cell.short}


def tau_text(tau: float) -> str:
    return f"solved: relative MSE <= {fmt(tau)}"
