"""The five outcomes (experiments/outcomes.py) and the checks before one is reported (settle.py): a cell
still falling or trained short of the paper's steps decides nothing, nor does an outcome that turns on one
seed; the quick and paper profiles differ only by "undecided", never by opposite outcomes."""

import json
from pathlib import Path

import pytest

from sparsemem.experiments import EXPERIMENTS, expand_all
from sparsemem.experiments import outcomes as oc
from sparsemem.experiments.outcomes import (
    HOLDS,
    OUTCOMES,
    OUTSIDE,
    REFUTED,
    UNDECIDED,
    UNTESTABLE,
    Part,
    combine,
    from_truth,
    label,
)
from sparsemem.experiments.settle import paper_steps
from sparsemem.experiments.verdicts import INCONCLUSIVE, Verdict
from sparsemem.report import build_report
from sparsemem.sweep import Store

ROOT = Path(__file__).resolve().parents[1]
OPPOSITE = {HOLDS: {REFUTED}, OUTSIDE: {REFUTED}, REFUTED: {HOLDS, OUTSIDE}}


def test_a_truth_maps_onto_one_outcome_with_a_reason():
    assert from_truth(True, "paper's RPE family: log")[0] == HOLDS
    assert from_truth(True, "learned only") == (
        OUTSIDE,
        "the rule holds only under learned, an RPE outside the paper's class",
    )
    assert from_truth(False, "lin")[0] == REFUTED
    assert from_truth(INCONCLUSIVE)[0] == UNDECIDED and from_truth(None)[0] == UNDECIDED


def test_a_claim_with_parts_follows_from_them():
    held, out = Part("a", HOLDS, "r"), Part("b", OUTSIDE, "s", scope="learned only")
    assert combine([held, held])[0] == HOLDS and combine([held, out])[0] == OUTSIDE
    assert combine([held, Part("c", REFUTED, "t")])[0] == REFUTED  # one part refuted refutes the claim
    assert combine([Part("d", UNDECIDED, "u"), Part("c", REFUTED, "t")])[0] == REFUTED
    assert combine([held, Part("d", UNDECIDED, "u")])[0] == UNDECIDED
    assert combine([])[0] == UNDECIDED
    verdict = Verdict(True, "x", parts=[held, out])
    assert verdict.label == "holds outside the paper's class (learned)"


def test_a_task_that_cannot_decide_wins_over_the_rule_and_names_its_variant():
    t = oc.Testability("m = 16", "m = 256", False, "the width floor is 0 at m = 16", {"width floor, m=16": 0.0})
    verdict = Verdict(False, "x", scope="lin", testability=t)
    assert verdict.outcome == UNTESTABLE and verdict.judgement()[1] == "the width floor is 0 at m = 16"
    verdict.variant = Part("a spline readout", OUTSIDE, "r", scope="learned only")
    assert verdict.label == "the task cannot decide it; on a spline readout: holds outside the paper's class"
    record = verdict.record()
    assert (
        record["testability"]["floors"] == {"width floor, m=16": 0.0} and record["rule_over_seeds"] == "does not hold"
    )
    assert record["variant"]["outcome"] == OUTSIDE and record["outcome"] == UNTESTABLE
    assert label(None) == "no claim judged" and len(OUTCOMES) == 5


def fill(store, name, value_of, steps, seeds=(0, 1, 2), curve=None):
    """Quick-profile cells of an experiment, trained `steps` steps, finished at val_rel = value_of(config),
    with a validation curve curve(value) where given."""
    runs = [
        c.model_copy(update={"train": c.train.model_copy(update={"seed": s, "steps": steps})})
        for c in expand_all(EXPERIMENTS[name].make_specs("quick"))
        for s in seeds
    ]
    store.add(name, [(c.config_hash(), c.name, c.to_dict()) for c in runs])
    for c in runs:
        v = value_of(c)
        metrics = {"curve": curve(v, steps)} if curve else {}
        store.finish(c.config_hash(), {"status": "done", "val_rel": v, "val_loss": v, "steps": steps, **metrics})


def fake_4a(log1, lin):
    """One log head at log1 (a value per seed, or one for all); lin at `lin` for every H."""
    return lambda c: (log1[c.train.seed] if isinstance(log1, list) else log1) if c.model.rpe == "log" else lin


def outcome(tmp_path, name="4a", **kw):
    with Store(tmp_path / "r.db") as store:
        fill(store, name, **kw)
    return build_report(tmp_path / "r.db", tmp_path / "out")[name]


def test_a_cell_trained_short_of_the_paper_steps_cannot_refute(tmp_path):
    """quick 4a: one log head ends at 1e-3 after 2,000 of the paper's 10,000 steps: the rule says it fails,
    the outcome is undecided; at the paper's steps the same numbers refute the claim."""
    short = outcome(tmp_path / "q", value_of=fake_4a(1e-3, 1.0), steps=2000)
    assert short.holds is False and short.outcome == UNDECIDED
    assert "budget-limited: log H=1" in short.parts[0].reason
    full = outcome(tmp_path / "p", value_of=fake_4a(1e-3, 1.0), steps=paper_steps(EXPERIMENTS["4a"]))
    assert full.outcome == REFUTED


def test_a_cell_still_falling_at_the_end_cannot_refute(tmp_path):
    """At the paper's steps, a cell whose validation error fell more than 2x over the last fifth is
    budget-limited; one that fell less is not."""
    steps = paper_steps(EXPERIMENTS["4a"])

    def curve(drop):
        return lambda v, n: [[n * k // 10, v * drop ** (10 - k)] for k in range(1, 11)]

    steep = outcome(tmp_path / "a", value_of=fake_4a(1e-3, 1.0), steps=steps, curve=curve(1.5))  # 2.25x
    assert steep.outcome == UNDECIDED and "still falling" in steep.parts[0].reason
    flat = outcome(tmp_path / "b", value_of=fake_4a(1e-3, 1.0), steps=steps, curve=curve(1.3))  # 1.69x
    assert flat.outcome == REFUTED


def test_an_outcome_that_turns_on_one_seed_is_undecided(tmp_path):
    """1a's case on 3b: DP-free solved for every seed, DP for two of three. With every seed the rule says
    "does not hold" (DP-free solved, DP not better); leaving the third seed out makes both arms solved, a
    tie that decides nothing: the outcome turns on that seed."""
    steps = paper_steps(EXPERIMENTS["3b_synthetic"])

    def value_of(dp_by_seed):
        return lambda c: dp_by_seed[c.train.seed] if c.model.attention == "dp" else 1e-6

    turned = outcome(tmp_path / "a", "3b_synthetic", value_of=value_of([1e-6, 2e-6, 5e-4]), steps=steps)
    assert turned.holds is False and turned.outcome == UNDECIDED
    assert turned.judgement()[1].startswith("turns on seed 2: without it the outcome is 'undecided'")
    steady = outcome(tmp_path / "b", "3b_synthetic", value_of=value_of([0.3, 0.4, 0.5]), steps=steps)
    assert steady.outcome == REFUTED  # DP worse at every seed: leaving any one out changes nothing
    alone = outcome(tmp_path / "c", value_of=fake_4a([1e-7], 0.5), steps=steps, seeds=(0,))
    assert alone.holds is True and alone.outcome == UNDECIDED
    assert "one seed (0) alone decides nothing" in alone.judgement()[1]


@pytest.mark.parametrize("name", ["4a", "3b_synthetic", "length_gen"])
def test_quick_and_paper_profiles_never_give_opposite_outcomes(tmp_path, name):
    """The same experiment judged from quick-profile runs that end unsolved (2,000 steps) and from paper-
    profile runs that solve: the quick outcome may be undecided, never the opposite of the paper's."""
    steps = paper_steps(EXPERIMENTS[name])
    quick = outcome(tmp_path / "q", name, value_of=lambda c: 0.3 if c.train.seed else 0.2, steps=steps // 5)
    paper = outcome(tmp_path / "p", name, value_of=lambda c: 1e-7 if c.train.seed else 2e-7, steps=steps)
    assert quick.outcome not in OPPOSITE.get(paper.outcome, set()), (quick.label, paper.label)
    assert quick.outcome == UNDECIDED


@pytest.mark.parametrize("report", ["quick-report", "paper-report", "text-report", "theory-report"])
def test_committed_reports_carry_the_outcome_fields(report):
    data = json.loads((ROOT / "docs" / report / "verdicts.json").read_text())
    for name, entry in data["experiments"].items():
        assert entry["outcome"] in (*OUTCOMES, None), name
        for key in ("reason", "class", "testability", "decided_by", "direction", "size", "paper_size", "parts"):
            assert key in entry, (name, key)


@pytest.mark.parametrize("short", ["quick-report", "theory-report"])
def test_the_committed_quick_reports_never_contradict_the_paper_report(short):
    quick, paper = (
        json.loads((ROOT / "docs" / r / "verdicts.json").read_text())["experiments"] for r in (short, "paper-report")
    )
    assert set(quick) & set(paper)
    for name in set(quick) & set(paper):
        assert quick[name]["outcome"] not in OPPOSITE.get(paper[name]["outcome"], set()), name


def test_the_readme_answers_match_the_paper_report():
    """The README's one-minute table states each insight's outcome as the committed paper report has it."""
    paper = json.loads((ROOT / "docs" / "paper-report" / "verdicts.json").read_text())["experiments"]
    names = {"1a": "1a_synthetic", "3b": "3b_synthetic"}
    starts = tuple(f"| {k} " for k in ("1a", "1b", "2a", "2b", "3a", "3b", "4a", "4b"))
    rows = [line.split(" | ") for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(starts)]
    assert len(rows) == 8
    for insight, said, *_ in rows:
        key = insight.strip("| ").split()[0]
        entry = paper[names.get(key, key)]
        head, _, variant = said.partition("; on ")
        assert head.split(" (")[0] == entry["outcome"], key
        if variant:
            assert variant.split(": ", 1)[1].split(" (")[0] == entry["variant"]["outcome"], key


def test_a_diagnostic_resting_on_an_upper_bound_or_one_cell_never_reads_confirmed():
    from sparsemem.experiments.verdicts import diagnosis

    assert diagnosis("p", "m", True).endswith("-> confirmed")
    assert diagnosis("p", "m", True, "a best fit found").endswith("-> consistent with it (a best fit found)")
    assert diagnosis("p", "m", False, "a best fit found").endswith("-> refuted")
    assert diagnosis("p", "m", INCONCLUSIVE).endswith("-> inconclusive")


def test_no_committed_report_holds_sqlite_side_files():
    """A read-only open of a committed store can leave -shm / -wal files beside it; they must not be committed."""
    assert sorted(p.name for p in (ROOT / "docs").glob("*-report/results.db-*")) == []
