"""The verdict rules with absolute levels (experiments/rules.py), on constructed spreads over seeds.

Each case is one the rules were written for: two solved cells tie and so do two unlearned ones, a ratio in
the noise floor decides nothing, direction is read over every pairing of seeds (a size only where a claim
asks for one), an absent paper pattern gives "does not hold", a claim that holds only outside the paper's
RPE family says so."""

from sparsemem.experiments.rules import (
    TAU,
    UNLEARNED,
    beats,
    count_cells,
    direction,
    helps,
    negate,
    no_gain,
    reproduces,
    reproduces_bound,
    scoped,
    size,
    solved,
    tie,
    unlearned,
)
from sparsemem.experiments.verdicts import INCONCLUSIVE, Spread, Verdict

S = Spread


def test_solved_is_three_way_over_seeds():
    assert solved(S([1e-6, 5e-5])) is True
    assert solved(S([2e-4, 0.5])) is False
    assert solved(S([1e-6, 2e-4])) is INCONCLUSIVE
    assert solved(None) is None
    assert solved(S([5e-4]), tau=1e-3) is True  # the experiment's own level


def test_two_solved_cells_tie_whatever_their_ratio():
    # 2b's learned "H helps 524x": 4.0e-6 against 7.6e-9, both solved
    small, large = S([4.0e-6, 3.1e-6, 5.9e-6]), S([7.6e-9, 5.2e-9, 4.0e-8])
    assert tie(small, large)
    assert helps(small, large) is False  # nothing left for H to help
    assert no_gain(small, large) is True
    assert beats(large, small) is INCONCLUSIVE  # a tie decides nothing
    assert beats(small, large) is INCONCLUSIVE


def test_noise_level_ratios_decide_nothing():
    # 4b at beta = 5: lin 1 head against the best log cell, both below tau, lin's seeds spanning 385x
    lin, log = S([5.07e-12, 6.65e-11, 1.95e-9]), S([6.17e-10, 2.45e-9, 6.93e-9])
    assert beats(lin, log, tau=1e-7) is INCONCLUSIVE
    assert beats(log, lin, tau=1e-7) is INCONCLUSIVE


def test_helps_is_direction_over_every_pairing_with_the_small_cell_unsolved():
    assert helps(S([0.5, 0.6]), S([1e-3, 2e-3])) is True
    # 2a's spline variant: m = 256 about 1.7x better at every pairing of seeds is a gain, whatever its size
    assert helps(S([0.5, 0.6]), S([0.3, 0.34])) is True
    assert helps(S([0.5, 0.6]), S([0.3, 0.55])) is INCONCLUSIVE  # better for some pairings only
    assert helps(S([0.5, 0.6]), S([0.6, 0.7])) is False  # worse at every pairing
    assert helps(S([5e-5, 0.6]), S([1e-9, 1e-9])) is INCONCLUSIVE  # small solved for one seed
    assert helps(None, S([0.1])) is None


def test_a_size_is_asked_for_by_the_claim_not_shared():
    assert helps(S([0.5, 0.6]), S([0.3, 0.34]), factor=10) is False  # better, not the claim's 10x
    assert helps(S([0.5]), S([0.01]), factor=100) is False
    assert no_gain(S([0.5, 0.6]), S([0.3, 0.34]), factor=2) is True  # under 2x at some pairing
    assert no_gain(S([0.5, 0.6]), S([0.1, 0.2]), factor=2) is False  # 2x or more at every pairing


def test_two_unlearned_cells_tie():
    # 2a under lin: 0.999 and 0.998, every seed explaining under a tenth of Var(y): no direction to read
    a, b = S([0.998, 0.9995]), S([0.996, 0.997])
    assert unlearned(a) is True and tie(a, b)
    assert helps(a, b) is INCONCLUSIVE and beats(b, a) is INCONCLUSIVE
    assert unlearned(S([0.5, 0.95])) is INCONCLUSIVE and unlearned(S([UNLEARNED])) is True
    assert helps(S([0.95, 0.99]), S([0.5, 0.6])) is True  # one arm learned: direction decides


def test_beats_with_one_arm_solved():
    assert beats(S([1e-6, 2e-6]), S([0.3, 0.35])) is True  # DP solves, DP-free does not
    assert beats(S([0.3, 0.35]), S([1e-6, 2e-6])) is False
    assert beats(S([0.1, 0.2]), S([0.3, 0.35])) is True  # 3b under lin: lower at every pairing
    assert beats(S([0.1, 0.4]), S([0.3, 0.35])) is INCONCLUSIVE  # lower at some pairings only
    # b solved for one seed of two: better everywhere still shows nothing for that seed
    assert beats(S([1e-9, 2e-9]), S([1e-6, 5e-4])) is INCONCLUSIVE


def test_size_is_a_ratio_of_medians_with_its_range_over_pairings():
    got = size(S([0.4, 0.5, 0.6]), S([0.1, 0.2, 0.25]))
    assert got.median == 0.5 / 0.2 and got.lo == 0.4 / 0.25 and got.hi == 0.6 / 0.1 and got.seeds == 3
    assert size(None, S([0.1])) is None


def test_direction_in_words():
    assert direction("DP", S([0.1, 0.12]), "DP-free", S([0.5, 0.6])).startswith("DP lower at every")
    assert direction("DP", S([0.5, 0.6]), "DP-free", S([0.1, 0.12])).startswith("DP-free lower at every")
    assert direction("a", S([0.1, 0.6]), "b", S([0.3, 0.4])).startswith("mixed")
    assert direction("a", S([1e-6, 2e-6]), "b", S([1e-7, 3e-7])).startswith("tie")


def test_paper_numbers():
    # 4a: the paper's lin stays at 0.19 with up to 64 heads; ours reaches 2.3e-7
    assert reproduces(S([1.1e-7, 2.3e-7]), 0.19) is False
    assert reproduces(S([0.15, 0.4]), 0.19) is True
    assert reproduces(S([4.3, 4.4]), 0.19) is False  # a failure far worse is not the paper's number either
    assert reproduces(S([4e-4, 6e-4]), 5.3e-4) is True
    assert reproduces(S([6e-10, 7e-9]), 5.3e-4) is False  # 4b's log: not the paper's 5.3e-4
    assert reproduces(S([1e-4, 6e-2]), 5.3e-4) is INCONCLUSIVE
    assert reproduces_bound(S([2e-14, 3e-14]), 1e-5) is True
    assert reproduces_bound(S([2e-5, 3e-5]), 1e-5) is False


def test_absent_paper_pattern_does_not_hold():
    """2b: the paper falls from 1.16 (H = 1) to 1e-6; ours sits at Var(y) under lin and log for every H
    and is already solved at H = 1 under learned: the pattern is absent everywhere."""
    per = {
        "lin": helps(S([0.5, 0.6]), S([0.55, 0.65]), factor=100),
        "log": helps(S([0.7, 0.8]), S([0.7, 0.8]), factor=100),
        "learned": helps(S([4.0e-6, 3e-6]), S([7.6e-9, 5e-9]), factor=100),
    }
    assert scoped(per) == (False, "lin, log, learned")
    assert Verdict(*scoped(per)[:1], "x", scope=scoped(per)[1]).label == "does not hold"


def test_scope_names_a_verdict_resting_outside_the_paper_family():
    truth, scope = scoped({"lin": False, "log": False, "learned": True})
    assert (truth, scope) == (True, "learned only")
    assert Verdict(truth, "x", scope=scope).label == "holds outside the paper's class (learned)"
    assert Verdict(truth, "x", scope=scope).record()["outcome"] == "holds outside the paper's class"
    truth, scope = scoped({"lin": True, "log": False, "learned": True})
    assert truth is True and scope == "paper's RPE family: lin"
    assert Verdict(truth, "x", scope=scope).label == "holds"
    assert scoped({"lin": INCONCLUSIVE, "learned": False}) == (INCONCLUSIVE, "lin, learned")
    assert scoped({"lin": False, "learned": INCONCLUSIVE}) == (False, "lin")  # fails in the family only
    assert scoped({}) == (None, "")


def test_count_cells_over_a_grid():
    """3a: DP gains 10x or more in k of n cells; a cell where DP-free is already solved never counts."""
    pairs = [
        (S([0.5, 0.6]), S([1e-3, 2e-3])),  # counts
        (S([1e-5, 2e-5]), S([1e-9, 1e-9])),  # both solved: a tie
        (S([0.5, 0.6]), S([0.2, 0.3])),  # under 10x
        (S([0.5, 0.6]), S([1e-3, 0.2])),  # 10x for some pairings of seeds only: not counted
        (None, S([0.1])),  # not run
    ]
    assert count_cells(pairs, factor=10) == (1, 4)
    assert count_cells(pairs) == (3, 4)  # by direction alone the under-10x cell counts too


def test_negate_is_kleene():
    assert negate(True) is False and negate(False) is True
    assert negate(INCONCLUSIVE) is INCONCLUSIVE and negate(None) is None
    assert TAU == 1e-4
