"""What every experiment of the reproduction provides.

An experiment turns a profile (``quick`` or ``paper``) into sweep specs,
and turns the store's rows of those sweeps into tables, a figure and a
verdict. The verdict rules are code, stated in ``rule`` for the report;
they compare relative MSE (val_loss / Var(y)), and tables show both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from ..config import HASH_NEUTRAL, RunConfig
from ..plumbing import unique_by_hash
from ..sweep.spec import SweepSpec

PROFILES = ("quick", "paper")

# One AdamW setting for every cell of every toy experiment (the paper does not
# give its own): recorded in the report.
TRAIN_QUICK = {"steps": 2000, "batch_size": 100, "lr": 1e-3, "rpe_lr_scale": 30.0, "schedule": "cosine",
               "warmup_steps": 100, "val_samples": 2000, "eval_every": 500}
TRAIN_PAPER = {**TRAIN_QUICK, "steps": 10_000, "warmup_steps": 500, "val_samples": 10_000, "eval_every": 1000}


def train_settings(profile: str) -> dict:
    return dict(TRAIN_QUICK if profile == "quick" else TRAIN_PAPER)


# Seeds per cell (model initialisation and data stream): verdicts are judged over them.
SEEDS = {"quick": (0, 1), "paper": (0, 1, 2)}


def seeds_of(profile: str) -> list[int]:
    return list(SEEDS[profile])


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

        out = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |",
               "|" + "---|" * len(self.header)]
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


class _Inconclusive:
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


INCONCLUSIVE = _Inconclusive()


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

    def __init__(self, values, lo=None, hi=None, median=None):
        vals = sorted(values)
        self.values = vals
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
        return Spread([], lo=div(alo, bhi), hi=div(ahi, blo), median=div(self.median, bmed))

    def __rmul__(self, k: float) -> "Spread":
        return Spread([], lo=k * self.lo, hi=k * self.hi, median=k * self.median)

    def __repr__(self) -> str:
        return f"Spread(median={self.median:.3g}, lo={self.lo:.3g}, hi={self.hi:.3g})"

    @property
    def seeds(self) -> int:
        return len(self.values)


def min_of(spreads) -> Optional[Spread]:
    """The smallest of several cells, as a range over every pairing of their seeds."""
    spreads = [s for s in spreads if s is not None]
    if not spreads:
        return None
    return Spread([], lo=min(s.lo for s in spreads), hi=min(s.hi for s in spreads),
                  median=min(s.median for s in spreads))


def truth_label(t) -> str:
    return {True: "holds", False: "does not hold"}.get(t, "inconclusive") if t is not None else "incomplete"


@dataclass
class Verdict:
    holds: object  # True, False, INCONCLUSIVE (over seeds), or None: not enough finished runs to judge
    ours: str  # our numbers, one line
    detail: str = ""  # why, in a sentence or two
    diagnostic: str = ""  # a run that tests the explanation in `detail`: what it predicts, measured, outcome

    @property
    def label(self) -> str:
        return truth_label(self.holds)


@dataclass
class Experiment:
    name: str
    title: str
    insight: str  # the paper's claim (PAPER.md section 5)
    paper: str  # what the paper reported
    rule: str  # the verdict rule, in words
    specs: Callable[[str], list[SweepSpec]]
    analyse: Callable[["Results"], tuple[list[Table], Verdict]]
    figure: Callable[["Results", str], None]
    notes: str = ""  # choices and caveats for the report
    needs_corpus: bool = False  # text experiments: specs(profile, corpus)
    # computed experiments train nothing: compute(profile) returns JSON data that the store keeps as meta
    # ("computed:NAME") and analyse / figure read from Results.computed
    compute: Optional[Callable[[str], dict]] = None
    # optimal-fit floors the report sets beside trained cells (experiments/floors.py): computed when the
    # experiment runs, kept in the store's computed table, read back as Results.floor
    floors: Optional[Callable[[str], list]] = None

    def make_specs(self, profile: str, corpus: Optional[str] = None) -> list[SweepSpec]:
        if self.needs_corpus:
            if not corpus:
                from ..config import ConfigError

                raise ConfigError(f"experiment {self.name} trains language models: give --corpus DIR "
                                  "(a folder of text files) or --corpus openwebtext")
            return self.specs(profile, corpus)
        return self.specs(profile)


class Results:
    """The finished rows of an experiment's runs, looked up by config."""

    def __init__(self, rows: list[dict], computed: Optional[dict] = None, floors: Optional[list[dict]] = None):
        self.rows = rows
        self.computed = computed
        self.floors = {(r["quantity"], r["target"], r["rpe"], r["heads"]): r["value"] for r in floors or ()}

    def floor(self, quantity: str, target: str, rpe: str, heads: int) -> Optional[float]:
        """A stored optimal-fit floor (experiments/floors.py); None where the store holds none."""
        return self.floors.get((quantity, target, rpe, heads))

    def subset(self, rows: list[dict]) -> "Results":
        """The same experiment's computed data over other rows."""
        out = Results(rows, self.computed)
        out.floors = self.floors
        return out

    @staticmethod
    def _keys(where: Optional[dict], kw: dict) -> dict:
        """One filter from dotted keys (``{"model.heads": 4}``) and keyword ones (``model__heads=4``)."""
        out = {k.replace("__", "."): v for k, v in kw.items()}
        out.update(where or {})
        return out

    @staticmethod
    def _get(config: dict, key: str):
        """A dotted key's value in a stored config; a field added after the row was stored reads as its
        hash-neutral default."""
        node = config
        parts = key.split(".")
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and tuple(parts) in HASH_NEUTRAL:
            node = HASH_NEUTRAL[tuple(parts)]
        return node

    def select(self, where: Optional[dict] = None, **kw) -> list[dict]:
        """Rows whose config matches every key = value given: dotted keys in ``where``
        (``{"model.heads": 4}``) or as keywords with ``__`` (``model__heads=4``)."""
        keys = self._keys(where, kw)
        return [row for row in self.rows if all(self._get(row["config"], k) == v for k, v in keys.items())]

    def spread(self, metric: str = "val_rel", where: Optional[dict] = None, **kw) -> Optional[Spread]:
        """A metric over the finished rows matching the filter, one value a seed (diverged: inf); None if none."""
        vals = []
        for row in self.select(where, **kw):
            if row["status"] == "done" and row.get(metric) is not None and math.isfinite(row[metric]):
                vals.append(row[metric])
            elif row["status"] == "diverged":
                vals.append(math.inf)
        return Spread(vals) if vals else None

    def value(self, metric: str = "val_rel", where: Optional[dict] = None, **kw) -> Optional[float]:
        """The median of a metric over the seeds of the finished rows matching the filter."""
        found = self.spread(metric, where, **kw)
        return None if found is None else found.median

    def levels(self, key: str, where: Optional[dict] = None) -> list:
        """The distinct values of a dotted config key among the rows matching ``where``, sorted."""
        return sorted({self._get(r["config"], key) for r in self.select(where)}, key=lambda v: (v is None, v))

    def grid(self, rows: str, cols: str, metric: str = "val_rel", where: Optional[dict] = None) -> "Pivot":
        """A metric pivoted over two dotted config keys: a Spread over seeds per (row, column) cell,
        None where no run finished; e.g. ``res.grid("model.heads", "model.ffn_width",
        where={"model.rpe": "lin"})``."""
        rlev, clev = self.levels(rows, where), self.levels(cols, where)
        cells = [[self.spread(metric, {**(where or {}), rows: r, cols: c}) for c in clev] for r in rlev]
        return Pivot(rows, cols, rlev, clev, cells)


@dataclass
class Pivot:
    """A metric over two config keys; ``cells[i][j]`` is the Spread at (row_levels[i], col_levels[j])."""

    rows: str
    cols: str
    row_levels: list
    col_levels: list
    cells: list[list[Optional[Spread]]]

    def at(self, row, col) -> Optional[Spread]:
        """The cell at (row, col); None where no run finished or the level is absent."""
        if row not in self.row_levels or col not in self.col_levels:
            return None
        return self.cells[self.row_levels.index(row)][self.col_levels.index(col)]

    def medians(self) -> list[list[Optional[float]]]:
        return [[None if c is None else c.median for c in line] for line in self.cells]


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


def spec(name: str, base: dict, grid: dict, seeds=(0,), cases=None) -> SweepSpec:
    return SweepSpec(name=name, base=base, grid=grid, seeds=list(seeds), cases=cases or [{}])


def expand_all(specs: list[SweepSpec]) -> list[RunConfig]:
    return unique_by_hash(cfg for s in specs for cfg in s.expand())
