"""The five outcomes a claim can get (docs/reproduction.md says them in words), and how one follows from a rule's truth.

A rule answers over seeds in three ways (True, False, INCONCLUSIVE; None without runs: verdicts.py). A
claim's outcome says more than that truth: whether the task could decide the claim at all, and whether
what decided it lies in the paper's RPE class.

- ``holds``: the rule holds under an RPE of the paper's class (lin, log, T5, KERPLE-log, ALiBi);
- ``holds outside the paper's class``: it holds only under an RPE the paper does not have (learned);
- ``does not hold``: it fails, on a task whose floors say the arms can be separated;
- ``the task cannot decide it``: the floors say the arm that should fail can succeed (or the arm that
  should succeed cannot), so no training run can tell the claim apart from its negation;
- ``undecided``: seeds disagree, an outcome turns on one seed, a cell it rests on is still improving when
  its budget ends, or too few runs finished.

This module imports nothing of the project: truths are compared by identity (``is True``, ``is False``),
and anything else counts as inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

HOLDS = "holds"
OUTSIDE = "holds outside the paper's class"
REFUTED = "does not hold"
UNTESTABLE = "the task cannot decide it"
UNDECIDED = "undecided"
OUTCOMES = (HOLDS, OUTSIDE, REFUTED, UNTESTABLE, UNDECIDED)
DECIDED = (HOLDS, OUTSIDE, REFUTED, UNTESTABLE)


@dataclass
class Testability:
    """Whether a task can separate a claim's arms, from its floors (what the arms can express at best).

    ``decidable`` is False when a floor lets the arm that should fail reach the solved level (or keeps the
    arm that should succeed from it); True when the floors leave room for the claim to come out either
    way; None when no floor was computed. ``floors`` are the numbers that say so."""

    should_fail: str
    should_succeed: str
    decidable: Optional[bool] = None
    reason: str = ""
    floors: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {
            "should_fail": self.should_fail,
            "should_succeed": self.should_succeed,
            "decidable": self.decidable,
            "reason": self.reason,
            "floors": self.floors,
        }


@dataclass
class Part:
    """One part of a claim with parts (4a: log solves with one head AND lin fails with up to 64), or the
    discriminating variant a claim is judged on where the paper's task cannot decide it."""

    name: str
    outcome: str
    reason: str
    cells: list = field(default_factory=list)  # names of the compared cells this part rests on
    scope: str = ""  # the RPE it holds under, where it holds outside the paper's class

    def record(self) -> dict:
        out = {"name": self.name, "outcome": self.outcome, "reason": self.reason, "cells": self.cells}
        return {**out, "scope": self.scope} if self.scope else out


def outside_rpe(scope: str) -> str:
    """The RPE named by an outside-the-class scope ("learned only" -> "learned"); the scope as it is else."""
    return scope[: -len(" only")] if scope.endswith(" only") else scope


def from_truth(truth, scope: str = "") -> tuple[str, str]:
    """A rule's three-way truth and RPE scope (rules.scoped) as an outcome and its one-line reason."""
    if truth is None:
        return UNDECIDED, "too few finished runs to judge"
    if truth is True:
        if scope.endswith(" only"):
            return OUTSIDE, f"the rule holds only under {outside_rpe(scope)}, an RPE outside the paper's class"
        return HOLDS, f"the rule holds for every pairing of seeds ({scope or 'as stated'})"
    if truth is False:
        return REFUTED, f"the rule fails for every pairing of seeds ({scope or 'as stated'})"
    return UNDECIDED, "the rule holds for some pairings of seeds and fails for others"


def combine(parts: list[Part]) -> tuple[str, str]:
    """A claim's outcome from its parts (all must hold): one part refuted refutes it; else a part the task
    cannot decide, or one undecided, leaves it so; else it holds, outside the paper's class if any part
    does."""
    if not parts:
        return UNDECIDED, "no part judged"
    by = {o: [p for p in parts if p.outcome == o] for o in OUTCOMES}
    for outcome in (REFUTED, UNTESTABLE, UNDECIDED):
        if by[outcome]:
            names = ", ".join(p.name for p in by[outcome])
            return outcome, f"{outcome} for part {names}: {by[outcome][0].reason}"
    if by[OUTSIDE]:
        return OUTSIDE, "every part holds, " + "; ".join(f"{p.name}: {p.reason}" for p in by[OUTSIDE])
    return HOLDS, "every part holds in the paper's class"


def label(outcome: Optional[str], scope: str = "", variant: Optional[Part] = None) -> str:
    """The outcome in words for tables: the RPE named where a claim holds outside the paper's class, and
    the outcome on the experiment's variant task beside it where one ran."""
    if outcome is None:
        return "no claim judged"
    text = outcome
    if outcome == OUTSIDE and scope:
        text += f" ({outside_rpe(scope)})"
    if variant is not None:
        text += f"; on {variant.name}: {label(variant.outcome)}"
    return text
