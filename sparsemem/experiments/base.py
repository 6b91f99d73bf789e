"""What every experiment of the reproduction provides.

An experiment turns a profile (``quick`` or ``paper``) into sweep specs,
and turns the store's rows of those sweeps into tables, a figure and a
verdict. The verdict rules are code, stated in ``rule`` for the report;
they compare relative MSE (val_loss / Var(y)), and tables show both.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..config import HASH_NEUTRAL, RunConfig, TrainConfig, unique_by_hash
from ..sweep.spec import SweepSpec
from .verdicts import (
    BUDGET_DROP,
    BUDGET_SHARE,
    INCONCLUSIVE,
    Inconclusive,
    Spread,
    Table,
    Verdict,
    all_of,
    any_of,
    diagnosis,
    falls_at_end,
    fmt,
    fmt_spread,
    min_of,
    ratio,
    still_falling,
    truth_label,
)

PROFILES = ("quick", "paper", "text")  # text: the language-model experiments only (text.py)

# One AdamW setting for every cell of every toy experiment (the paper does not
# give its own), recorded in the report: the optimizer is TrainConfig's defaults, written out so a store's
# configs say it; the warm-up is 5% of the steps.
_OPTIMIZER = {k: TrainConfig.model_fields[k].default for k in ("lr", "rpe_lr_scale", "schedule")}
TRAIN_QUICK = {
    "steps": 2000,
    "batch_size": 100,
    **_OPTIMIZER,
    "warmup_steps": 100,
    "val_samples": 2000,
    "eval_every": 500,
}
TRAIN_PAPER = {**TRAIN_QUICK, "steps": 10_000, "warmup_steps": 500, "val_samples": 10_000, "eval_every": 1000}


def train_settings(profile: str) -> dict:
    return dict(TRAIN_QUICK if profile == "quick" else TRAIN_PAPER)


# Seeds per cell (task draw, model initialisation and data stream): verdicts are judged over them.
SEEDS = {"quick": (0, 1), "paper": (0, 1, 2)}


def seeds_of(profile: str) -> list[int]:
    return list(SEEDS[profile])


@functools.lru_cache(maxsize=1)
def catalogue() -> dict:
    """The experiments' words (catalogue.yaml): title, insight, paper, rule and notes by experiment name."""
    import yaml

    return yaml.safe_load((Path(__file__).with_name("catalogue.yaml")).read_text())


PROSE = ("title", "insight", "paper", "rule", "notes")


@dataclass
class Experiment:
    """One experiment: its specs, analysis and figure here; its words from catalogue.yaml, unless given."""

    name: str
    specs: Callable[[str], list[SweepSpec]]
    analyse: Callable[["Results"], tuple[list[Table], Verdict]]
    figure: Callable[["Results", str], None]
    title: str = ""
    insight: str = ""  # the paper's claim (docs/reproduction.md)
    paper: str = ""  # what the paper reported
    rule: str = ""  # the verdict rule, in words
    notes: str = ""  # choices and caveats for the report
    needs_corpus: bool = False  # text experiments: specs(profile, corpus)
    # computed experiments train nothing: compute(profile) returns JSON data that the store keeps as meta
    # ("computed:NAME") and analyse / figure read from Results.computed
    compute: Optional[Callable[[str], dict]] = None
    # the keys compute returns: a store whose computed data lacks one (written by an older release) is
    # computed again when the experiment next runs
    compute_keys: tuple[str, ...] = ()
    # optimal-fit floors the report sets beside trained cells (experiments/floors.py): computed when the
    # experiment runs, kept in the store's computed table, read back as Results.floor
    floors: Optional[Callable[[str], list]] = None

    def __post_init__(self) -> None:
        words = catalogue().get(self.name, {})
        for field in PROSE:
            if not getattr(self, field):
                setattr(self, field, words.get(field, ""))
        missing = [f for f in PROSE[:4] if not getattr(self, f)]
        if missing:
            raise ValueError(f"experiment {self.name}: no {', '.join(missing)} in catalogue.yaml or the code")

    def make_specs(self, profile: str, corpus: Optional[str] = None) -> list[SweepSpec]:
        if self.needs_corpus:
            if not corpus:
                from ..config import ConfigError

                raise ConfigError(
                    f"experiment {self.name} trains language models: give --corpus shakespeare (fetched "
                    "once), --corpus DIR (a folder of text files) or --corpus openwebtext"
                )
            return self.specs(profile, corpus)
        if profile == "text":
            from ..config import ConfigError

            raise ConfigError(
                f"--profile text sizes the language-model experiments (1a_text, 3b_text) only; "
                f"run {self.name} with --profile quick or paper"
            )
        return self.specs(profile)


class Results:
    """The finished rows of an experiment's runs, looked up by config."""

    def __init__(self, rows: list[dict], computed: Optional[dict] = None, floors: Optional[list[dict]] = None):
        self.rows = rows
        self.computed = computed
        self.budget: Optional[int] = None  # the paper profile's steps for these runs (settle.py); None: unknown
        self.floors = {(r["quantity"], r["target"], r["rpe"], r["heads"]): r["value"] for r in floors or ()}

    def floor(self, quantity: str, target: str, rpe: str, heads: int) -> Optional[float]:
        """A stored optimal-fit floor (experiments/floors.py); None where the store holds none."""
        return self.floors.get((quantity, target, rpe, heads))

    def subset(self, rows: list[dict]) -> "Results":
        """The same experiment's computed data over other rows."""
        out = Results(rows, self.computed)
        out.floors, out.budget = self.floors, self.budget
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

    def select(self, where: Optional[dict] = None) -> list[dict]:
        """Rows whose config matches every dotted key = value of ``where`` (``{"model.heads": 4}``)."""
        keys = where or {}
        return [row for row in self.rows if all(self._get(row["config"], k) == v for k, v in keys.items())]

    def short(self, row: dict) -> bool:
        """Did the run train fewer steps than the paper profile gives it (settle.py's budget check)?"""
        return self.budget is not None and row["config"]["train"]["steps"] < self.budget

    def spread(self, metric: str = "val_rel", where: Optional[dict] = None) -> Optional[Spread]:
        """A metric over the finished rows matching the filter, one value a seed (diverged: inf); None if none."""
        vals, falling, short = [], 0, 0
        for row in self.select(where):
            if row["status"] == "done" and row.get(metric) is not None and math.isfinite(row[metric]):
                vals.append(row[metric])
                curve = (row.get("metrics") or {}).get("curve")
                falling += falls_at_end(curve, BUDGET_SHARE, BUDGET_DROP) is True
                short += self.short(row)
            elif row["status"] == "diverged":
                vals.append(math.inf)
        return Spread(vals, falling=falling, short=short) if vals else None

    def value(self, metric: str = "val_rel", where: Optional[dict] = None) -> Optional[float]:
        """The median of a metric over the seeds of the finished rows matching the filter."""
        found = self.spread(metric, where)
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


def spec(name: str, base: dict, grid: dict, seeds=(0,), cases=None) -> SweepSpec:
    """An experiment's sweep: seed s draws task s as well as the initialisation and data order."""
    return SweepSpec(name=name, base=base, grid=grid, seeds=list(seeds), cases=cases or [{}], seed_task=True)


def expand_all(specs: list[SweepSpec]) -> list[RunConfig]:
    return unique_by_hash(cfg for s in specs for cfg in s.expand())
