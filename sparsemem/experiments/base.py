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

from ..config import RunConfig
from ..sweep.spec import SweepSpec

PROFILES = ("quick", "paper")

# One AdamW setting for every cell of every toy experiment (the paper does not
# give its own): recorded in the report.
TRAIN_QUICK = {"steps": 2000, "batch_size": 100, "lr": 1e-3, "rpe_lr_scale": 30.0, "schedule": "cosine",
               "warmup_steps": 100, "val_samples": 2000, "eval_every": 500}
TRAIN_PAPER = {**TRAIN_QUICK, "steps": 10_000, "warmup_steps": 500, "val_samples": 10_000, "eval_every": 1000}


def train_settings(profile: str) -> dict:
    return dict(TRAIN_QUICK if profile == "quick" else TRAIN_PAPER)


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

    def csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.header)
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in row])
        return buf.getvalue()


@dataclass
class Verdict:
    holds: Optional[bool]  # None: not enough finished runs to judge
    ours: str  # our numbers, one line
    detail: str = ""  # why, in a sentence or two

    @property
    def label(self) -> str:
        return {True: "holds", False: "does not hold", None: "incomplete"}[self.holds]


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

    def __init__(self, rows: list[dict], computed: Optional[dict] = None):
        self.rows = rows
        self.computed = computed

    def select(self, **where) -> list[dict]:
        """Rows whose config matches every dotted key = value given (``model__heads=4``)."""
        out = []
        for row in self.rows:
            ok = True
            for key, want in where.items():
                node = row["config"]
                for part in key.split("__"):
                    node = node.get(part) if isinstance(node, dict) else None
                if node != want:
                    ok = False
                    break
            if ok:
                out.append(row)
        return out

    def value(self, metric: str = "val_rel", **where) -> Optional[float]:
        """The mean of a metric over the finished rows matching ``where`` (seeds averaged)."""
        vals = []
        for row in self.select(**where):
            if row["status"] == "done" and row.get(metric) is not None and math.isfinite(row[metric]):
                vals.append(row[metric])
            elif row["status"] == "diverged":
                vals.append(math.inf)
        return sum(vals) / len(vals) if vals else None


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
    runs, seen = [], set()
    for s in specs:
        for cfg in s.expand():
            h = cfg.config_hash()
            if h not in seen:
                seen.add(h)
                runs.append(cfg)
    return runs
