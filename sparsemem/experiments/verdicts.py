"""What an experiment's analysis returns: tables, three-way truths over seeds, verdicts, and their
formatting. A rule holds when it holds for every pairing of seeds in the compared cells, does not hold
when it fails for every pairing, and is inconclusive otherwise."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .outcomes import (
    DECIDED,
    HOLDS,
    OUTSIDE,
    REFUTED,
    UNTESTABLE,
    Part,
    Testability,
    combine,
    from_truth,
    label,
    outside_rpe,
)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list]

    def markdown(self) -> str:
        def cell(v):
            if isinstance(v, float):
                return fmt(v)
            return "" if v is None else str(v)

        out = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(out)

    def renamed(self, title: str) -> "Table":
        return Table(title, self.header, self.rows)

    def csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.header)
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in row])
        return buf.getvalue()


class Inconclusive:
    """The third truth value: a rule that holds for some pairings of seeds and fails for others."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self):
        raise TypeError("an inconclusive truth has no bool: combine it with all_of / any_of")

    def __repr__(self) -> str:
        return "INCONCLUSIVE"


INCONCLUSIVE = Inconclusive()


def all_of(*truths):
    """Kleene AND: False if any is False, True if all are True, else INCONCLUSIVE."""
    if any(t is False for t in truths):
        return False
    return True if all(t is True for t in truths) else INCONCLUSIVE


def any_of(*truths):
    """Kleene OR: True if any is True, False if all are False, else INCONCLUSIVE (no truths: False)."""
    if any(t is True for t in truths):
        return True
    return False if all(t is False for t in truths) else INCONCLUSIVE


class Spread:
    """A cell's metric over its seeds: ``lo``, ``hi`` and the ``median`` (diverged seeds count as inf).

    Comparisons answer over every pairing of seeds: ``a <= b`` is True when it holds for each choice of
    one seed of a and one of b (a.hi <= b.lo), False when it fails for each, else INCONCLUSIVE. Arithmetic
    (``/``, a number ``*``) and ``min_of`` give the range over all pairings of the cells involved. A cell
    used twice in one rule is paired independently with itself, so a rule judged this way can come out
    inconclusive where a joint choice would decide it, never the other way round.
    """

    def __init__(self, values, lo=None, hi=None, median=None, seeds=None, falling=0, short=0):
        vals = sorted(values)
        self.values = vals
        self.seeds = len(vals) if seeds is None else seeds  # a derived range keeps its cells' seed count
        self.falling = falling  # seeds whose validation error still fell steeply at the end (settle.py)
        self.short = short  # seeds trained for fewer steps than the paper profile gives the cell (settle.py)
        self.lo = vals[0] if lo is None else lo
        self.hi = vals[-1] if hi is None else hi
        if median is None:
            n = len(vals)
            median = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
        self.median = median

    @staticmethod
    def _ends(x):
        return (x.lo, x.hi) if isinstance(x, Spread) else (x, x)

    def _cmp(self, other, strict: bool, less: bool):
        (alo, ahi), (blo, bhi) = self._ends(self), self._ends(other)
        if not less:
            (alo, ahi), (blo, bhi) = (blo, bhi), (alo, ahi)
        ok = (lambda x, y: x < y) if strict else (lambda x, y: x <= y)
        if ok(ahi, blo):
            return True
        if not ok(alo, bhi):
            return False
        return INCONCLUSIVE

    def __le__(self, other):
        return self._cmp(other, False, True)

    def __lt__(self, other):
        return self._cmp(other, True, True)

    def __ge__(self, other):
        return self._cmp(other, False, False)

    def __gt__(self, other):
        return self._cmp(other, True, False)

    def __truediv__(self, other) -> "Spread":
        """The ratio's range for positive values (x / 0 = inf)."""
        div = lambda a, b: math.inf if b == 0 else a / b  # noqa: E731
        (alo, ahi), (blo, bhi) = self._ends(self), self._ends(other)
        bmed = other.median if isinstance(other, Spread) else other
        n = min(self.seeds, other.seeds) if isinstance(other, Spread) else self.seeds
        more = lambda key: getattr(self, key) + (getattr(other, key) if isinstance(other, Spread) else 0)  # noqa: E731
        return Spread(
            [], div(alo, bhi), div(ahi, blo), div(self.median, bmed), n, falling=more("falling"), short=more("short")
        )

    def __rmul__(self, k: float) -> "Spread":
        return Spread([], k * self.lo, k * self.hi, k * self.median, self.seeds, self.falling, self.short)

    def __repr__(self) -> str:
        return f"Spread(median={self.median:.3g}, lo={self.lo:.3g}, hi={self.hi:.3g})"


def min_of(spreads) -> Optional[Spread]:
    """The smallest of several cells, as a range over every pairing of their seeds."""
    spreads = [s for s in spreads if s is not None]
    if not spreads:
        return None
    return Spread(
        [],
        lo=min(s.lo for s in spreads),
        hi=min(s.hi for s in spreads),
        median=min(s.median for s in spreads),
        seeds=min(s.seeds for s in spreads),
        falling=sum(s.falling for s in spreads),  # the best cell may change while any of them still falls
        short=sum(s.short for s in spreads),
    )


def truth_label(t) -> str:
    return {True: "holds", False: "does not hold"}.get(t, "inconclusive") if t is not None else "incomplete"


def diagnosis(predicts: str, measured: str, outcome, weak: str = "") -> str:
    """A diagnostic's line: what the verdict's explanation predicts, what was measured, and the outcome
    (True: confirmed, False: refuted, INCONCLUSIVE over seeds). ``weak`` names why a True outcome cannot
    confirm the explanation (a best fit found bounds the optimum from above only; one cell at the
    evaluation interval's resolution): it then reads "consistent with it", never "confirmed"."""
    word = {True: f"consistent with it ({weak})" if weak else "confirmed", False: "refuted"}
    return f"the explanation predicts {predicts}; measured {measured} -> " + word.get(outcome, "inconclusive")


def falls_at_end(curve, share: float, drop: float) -> Optional[bool]:
    """Is a validation curve ((step, value) pairs) still falling at its end: its last value at most ``drop``
    times its last value ``share`` of the run earlier? None where the curve is too short to say."""
    pts = [(s, v) for s, v in curve or [] if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(pts) < 2:
        return None
    last_step, last = pts[-1]
    before = [v for s, v in pts[:-1] if s <= last_step * (1 - share)]
    return last <= drop * before[-1] if before else None


# A cell is budget-limited when it ends above the solved level while its validation error still falls by
# more than 2x over the last fifth of its steps: more steps could still change what it says.
BUDGET_SHARE, BUDGET_DROP = 0.2, 0.5


def still_falling(curves: list, share: float = 0.25, drop: float = 0.9):
    """Over seeds: is each validation curve still falling at its end (``falls_at_end``)? True for every
    seed, False for none, else INCONCLUSIVE; None without curves."""
    votes = [v for v in (falls_at_end(c, share, drop) for c in curves) if v is not None]
    if not votes:
        return None
    return True if all(votes) else False if not any(votes) else INCONCLUSIVE


@dataclass
class Verdict:
    holds: object  # True, False, INCONCLUSIVE (over seeds), or None: not enough finished runs to judge
    ours: str  # our numbers, one line
    detail: str = ""  # why, in a sentence or two
    diagnostic: str = ""  # a run that tests the explanation in `detail`: what it predicts, measured, outcome
    scope: str = ""  # the RPEs the verdict rests on ("paper's RPE family: lin", "learned only")
    tau: Optional[float] = None  # the solved level (relative MSE) the rules used
    paper_number: str = ""  # the paper's number or pattern for this claim
    ours_number: str = ""  # ours at the same cell
    reproduced: object = None  # does ours reproduce the paper's number (three-way over seeds; None: no number)
    paper_vs_ours: str = ""  # one sentence on what is and is not reproduced
    compared: list = field(default_factory=list)  # the numbers the rules compared (rules.compared)
    judged: bool = True  # False: the experiment judges no claim (forensics), it only reports
    testability: Optional[Testability] = None  # can the task separate the claim's arms (its floors)
    parts: list = field(default_factory=list)  # a claim with parts: each Part's outcome; the claim's follows
    variant: Optional[Part] = None  # where the paper's task cannot decide: the outcome on a task that can
    direction: str = ""  # which arm is better, in words, over every pairing of seeds
    size: Optional[Spread] = None  # the effect's size: a ratio of medians, its range over pairings
    size_name: str = ""  # what the ratio divides ("MSE at m=16 / MSE at m=256")
    paper_size: Optional[float] = None  # the paper's own ratio for the same effect, where it gives one
    override: Optional[tuple] = None  # (outcome, reason) set by settle.py: budget-limited, one seed decides

    def judgement(self) -> tuple[Optional[str], str]:
        """(outcome, one-line reason); outcome None where no claim is judged."""
        if not self.judged:
            return None, "the experiment judges no claim; it reports"
        if self.override is not None:
            return self.override
        if self.parts:  # a part refuted (by a construction, or on a task that can decide it) refutes the claim
            found = combine(self.parts)
            if found[0] == REFUTED:
                return found
        if self.testability is not None and self.testability.decidable is False:
            return UNTESTABLE, self.testability.reason
        if self.parts:
            return found
        return from_truth(self.holds, self.scope)

    @property
    def outcome(self) -> Optional[str]:
        return self.judgement()[0]

    @property
    def decided(self) -> bool:
        return self.outcome in DECIDED

    @property
    def label(self) -> str:
        """The outcome in words, naming the RPE where it holds outside the paper's class."""
        outcome = self.outcome
        scope = self.scope if self.scope.endswith(" only") else ""
        if outcome == OUTSIDE and not scope:
            scope = next((p.scope for p in self.parts if p.outcome == outcome), "")
        return label(outcome, scope, self.variant)

    def record(self) -> dict:
        """The machine-readable verdict (verdicts.json)."""
        outcome, reason = self.judgement()
        size = None
        if self.size is not None:
            size = {"name": self.size_name, "median": _num(self.size.median), "lo": _num(self.size.lo)}
            size["hi"] = _num(self.size.hi)
        return {
            "outcome": outcome,
            "verdict": self.label,
            "reason": reason,
            "class": None if outcome is None else _class(outcome, self.scope, self.parts),
            "scope": self.scope,
            "rule_over_seeds": None if self.holds is None else truth_label(self.holds),
            "tau": self.tau,
            "testability": None if self.testability is None else self.testability.record(),
            "parts": [p.record() for p in self.parts],
            "variant": None if self.variant is None else self.variant.record(),
            "decided_by": [c["name"] for c in self.compared],
            "direction": self.direction,
            "size": size,
            "paper_size": self.paper_size,
            "paper_number": self.paper_number,
            "ours_number": self.ours_number,
            "reproduced": None
            if self.reproduced is None
            else {True: "yes", False: "no"}.get(self.reproduced, "inconclusive"),
            "paper_vs_ours": self.paper_vs_ours,
            "compared": self.compared,
            "ours": self.ours,
        }


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _class(outcome: str, scope: str, parts: list) -> str:
    """Where the outcome rests: the paper's RPE class, an RPE outside it, or (other outcomes) the RPEs
    judged, or for a claim with parts each part's outcome."""
    if parts and outcome not in (HOLDS, OUTSIDE):
        return "per part: " + "; ".join(f"{p.name}: {p.outcome}" for p in parts)
    if outcome == OUTSIDE and parts:
        scope = next((p.scope for p in parts if p.scope.endswith(" only")), scope)
    if outcome == OUTSIDE:
        return "outside the paper's class" + (f": {outside_rpe(scope)}" if scope.endswith(" only") else "")
    if outcome == HOLDS:
        return "paper's class" + (f" ({scope})" if scope else "")
    return f"judged under: {scope}" if scope else "—"


def fmt(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "diverged"
    if v == 0:
        return "0"
    if abs(v) >= 1e-2 and abs(v) < 1e4:
        return f"{v:.3g}"
    return f"{v:.2e}"


def fmt_spread(v: Optional[Spread]) -> str:
    """The median, and the min-max range across seeds where there are several."""
    if v is None:
        return "—"
    if v.lo == v.hi:
        return fmt(v.median)
    return f"{fmt(v.median)} [{fmt(v.lo)}, {fmt(v.hi)}]"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, None when either is missing."""
    if a is None or b is None:
        return None
    if b == 0:
        return math.inf
    return a / b
