"""The width floor (theory/width.py): how well m ReLU units represent a readout of one token given exactly."""

import pytest
import torch

import sparsemem as sm
from sparsemem.experiments.affine import nonaffine_share
from sparsemem.experiments.floors import FloorSpec, compute_rows, missing, readout_target, width_spec
from sparsemem.theory.width import token_law, width_floors


def one_token(*overrides):
    cfg = sm.RunConfig.from_dict({}, ["task.kind=fixed", "task.lags=[0]", "task.seq_len=1", *overrides])
    return cfg, sm.make_task(cfg.task)


@pytest.mark.parametrize("readout", ["relu_net", "sum", "relu_spline"])
def test_any_readout_of_a_boolean_token_is_affine(readout):
    """On x in {+-1} every function of x takes two values: the floor is 0 without a single unit."""
    _, task = one_token(f"task.readout={readout}")
    assert max(width_floors(task, [0, 1, 16]).values()) < 1e-20


def test_the_paper_readout_on_uniform_tokens_needs_one_unit():
    """f = A relu(x) + B relu(-x): its best affine fit leaves the non-affine share (affine.py, a closed form),
    and one unit at the kink 0 represents it exactly."""
    for seed in (0, 3):
        cfg, task = one_token("task.readout=relu_net", "task.input=uniform", f"task.seed={seed}")
        floors = width_floors(task, [0, 1, 2])
        assert floors[0] == pytest.approx(nonaffine_share(cfg.to_dict()["task"]), rel=1e-5)
        assert floors[1] < 1e-20 and floors[2] < 1e-20


def brute_one_unit(task, points=2001) -> float:
    """The best one-unit fit by a search over the knot on a grid, coefficients by least squares."""
    x, w = token_law("uniform")
    y = task.readout(x[:, None]).double()
    var = float(w @ (y - w @ y) ** 2)
    best = float("inf")
    for u in torch.linspace(-1, 1, points, dtype=torch.float64):
        a = torch.stack([torch.ones_like(x), x, torch.relu(x - u)], 1) * w.sqrt()[:, None]
        c = torch.linalg.lstsq(a, (y * w.sqrt())[:, None]).solution
        best = min(best, float(((a @ c)[:, 0] - y * w.sqrt()).pow(2).sum()))
    return best / var


def test_a_spline_needs_as_many_units_as_it_has_knots():
    """relu_spline with K knots: exact with K units, not with fewer; floors fall with m; one unit matches
    a brute-force search over the knot (the floor is a best fit found, so at most the brute force's)."""
    _, task = one_token("task.readout=relu_spline", "task.readout.width=10", "task.input=uniform", "task.seed=2")
    floors = width_floors(task, range(0, 13))
    assert floors[10] < 1e-20 and floors[12] < 1e-20
    assert floors[9] > 1e-6 and floors[1] > 0.05
    assert all(floors[m + 1] <= floors[m] * (1 + 1e-9) for m in range(10))
    assert floors[1] <= brute_one_unit(task) + 1e-9


def test_gaussian_tokens_use_an_equal_mass_grid():
    x, w = token_law("gaussian")
    assert float(w.sum()) == pytest.approx(1.0) and float(w @ x) == pytest.approx(0.0, abs=1e-12)
    assert float(w @ x**2) == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(ValueError, match="token law"):
        token_law("cauchy")


def test_a_width_floor_needs_a_readout_of_one_token():
    cfg = sm.RunConfig.from_dict({}, ["task.kind=fixed", "task.lags=[3, 7]", "task.seq_len=10"])
    with pytest.raises(ValueError, match="one token"):
        width_floors(sm.make_task(cfg.task), [4])


def test_width_floors_are_stored_per_m_and_named_by_the_readout_alone():
    """A spec's shorthand task and a stored row's full config name the same floor; lags and length do not
    enter it; the store's heads column holds m."""
    short = {"kind": "fixed", "lags": [901], "input": "uniform", "readout": {"kind": "relu_spline", "width": 6}}
    full = sm.RunConfig.from_dict({"task": {**short, "seq_len": 1000}}).to_dict()["task"]
    assert readout_target(short) == readout_target(full) == readout_target({**full, "lags": [0], "seq_len": 1})
    assert readout_target(short) != readout_target({**short, "seed": 1})
    spec = width_spec(short, [2, 6])
    rows = compute_rows([spec])
    assert [(r[0], r[2], r[3]) for r in rows] == [("width", "any", 2), ("width", "any", 6)]
    assert rows[0][4] > 1e-3 and rows[1][4] < 1e-20
    have = [dict(zip(("quantity", "target", "rpe", "heads", "value"), r)) for r in rows]
    assert missing([spec], have) == [] and missing([spec], have[:1]) == [spec]
    with pytest.raises(ValueError, match="sizes"):
        FloorSpec("width", spec.target, "any", 6, 1)
