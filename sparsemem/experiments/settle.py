"""The checks every decided outcome passes before it is reported (docs/reproduction.md):

- **budget**: an outcome that rests on a cell which ends above the solved level while its budget may be
  what holds it there is undecided, never "does not hold". A cell is budget-limited when some seed ends
  above tau and either its validation error still falls by more than 2x over the last fifth of its steps
  (verdicts.BUDGET_SHARE, BUDGET_DROP), or it trained fewer steps than the paper profile gives the same
  run (the quick profile's 2,000 of 10,000: its learning-rate schedule ends early, so a flat curve says
  nothing of what more steps would do). A claim with parts is checked part by part, on each part's cells.
- **one seed**: an outcome that changes when any one seed (a task draw, an initialisation and a data
  stream) is left out turns on that seed, and is undecided; the reason names the seed, and such cells
  need more seeds (at least 5). One seed alone decides nothing for the same reason: leaving it out
  leaves no runs. A variant's outcome is checked the same way.

A task that cannot decide a claim (its floors) stays so whatever the budget.
"""

from __future__ import annotations

from typing import Optional

from ..config import ConfigError
from .base import Experiment, Results
from .outcomes import DECIDED, UNDECIDED, UNTESTABLE
from .verdicts import Verdict, fmt

MORE_SEEDS = 5  # the seeds a cell whose outcome turns on one seed needs before it can decide
_PAPER_STEPS: dict = {}


def paper_steps(exp: Experiment) -> Optional[int]:
    """The most steps the paper profile gives any run of the experiment (None: it trains none, or needs a
    corpus to say)."""
    if exp.name not in _PAPER_STEPS:
        try:
            specs = [] if exp.needs_corpus else exp.make_specs("paper")
        except ConfigError:
            specs = []
        steps = [cfg.train.steps for s in specs for cfg in s.expand()]
        _PAPER_STEPS[exp.name] = max(steps) if steps else None
    return _PAPER_STEPS[exp.name]


def budget_limited(verdict: Verdict, names=None) -> list[str]:
    """The compared cells (all, or those named) that end above tau for some seed while still falling or
    trained short of the paper profile's steps."""
    if verdict.tau is None:
        return []
    return [
        c["name"]
        for c in verdict.compared
        if (names is None or c["name"] in names)
        and (c.get("falling") or c.get("short"))
        and c.get("median") is not None
        and (c.get("hi") is None or c["hi"] > verdict.tau)
    ]


def _late(verdict: Verdict, cells: list[str]) -> str:
    return (
        f"budget-limited: {', '.join(cells)} end above {fmt(verdict.tau)} while still falling more than 2x over "
        "the last fifth of their steps or trained short of the paper profile's steps"
    )


def seed_of(row: dict):
    return row["config"].get("train", {}).get("seed")


def settle(exp: Experiment, res: Results, verdict: Verdict) -> Verdict:
    """Downgrade decided outcomes (the claim's, its parts', its variant's) to undecided where they rest on a
    budget-limited cell or turn on one seed; the rule's own truth and the tables stay as the rules made
    them."""
    for part in [*verdict.parts, *([verdict.variant] if verdict.variant is not None else [])]:
        late = budget_limited(verdict, set(part.cells)) if part.outcome in DECIDED[:3] else []
        if late:
            part.outcome, part.reason = UNDECIDED, f"{_late(verdict, late)} (the rule alone says: {part.reason})"
    outcome = verdict.outcome
    if outcome not in DECIDED:
        return verdict
    late = budget_limited(verdict) if outcome != UNTESTABLE and not verdict.parts else []
    if late:
        verdict.override = (UNDECIDED, f"{_late(verdict, late)} (the rule alone says: {outcome})")
        return verdict
    if res.rows:  # computed experiments are deterministic: no seed to leave out
        one_seed(exp, res, verdict)
    return verdict


def one_seed(exp: Experiment, res: Results, verdict: Verdict) -> None:
    """Leave each seed out in turn; where the claim's outcome, or its decided variant's, changes, it is
    undecided."""
    seeds = sorted({seed_of(r) for r in res.rows if r["status"] in ("done", "diverged")} - {None})
    variant = verdict.variant if verdict.variant is not None and verdict.variant.outcome in DECIDED else None
    for seed in seeds:
        _, without = exp.analyse(res.subset([r for r in res.rows if seed_of(r) != seed]))
        why = (
            f"turns on seed {seed}: without it the outcome is '{{}}' (with every seed: {{}}); its cells need more "
            f"seeds (at least {MORE_SEEDS})"
            if len(seeds) > 1
            else f"one seed ({seed}) alone decides nothing (the rule says: {{1}})"
        )
        if without.outcome != verdict.outcome:
            verdict.override = (UNDECIDED, why.format(without.outcome, verdict.outcome))
            return
        other = without.variant.outcome if without.variant is not None else None
        if variant is not None and other != variant.outcome:
            variant.reason = why.format(other, variant.outcome)
            variant.outcome = UNDECIDED
            variant = None
