"""Oracle floors of one layer of heads on nested (Task II) targets: hand-computed cases, an independent
Monte Carlo check through the task's own sampler, and the search's fallback."""

import pytest
import torch

from sparsemem.config import ConfigError, task_config
from sparsemem.theory import oracle
from sparsemem.theory.oracle import oracle_floors, reachable_lags

WARM_UP = {
    "kind": "adaptive",
    "seq_len": 12,
    "input": "rademacher",
    "lags": [2, 3],
    "depth": 0,
    "readout": "product",
    "output": "last",
    "g": [{"1": 1, "-1": 2}, {"1": 3, "-1": 3}],
}


def test_warm_up_floors_by_hand():
    """y = x_t x_{t-g1(x_t)} x_{t-3}, g1(1) = 1, g1(-1) = 2, Var(y) = 1. Fixed lags {1, 3} read all of y when
    x_t = 1 and nothing useful when x_t = -1 (0.5); a gate picks {g1(x_t), 3} per x_t (0); one lag leaves a
    zero-mean factor unread (1)."""
    out = oracle_floors(task_config(WARM_UP), [1, 2, 3])
    assert out["candidate_lags"] == [1, 2, 3] and out["var"] == pytest.approx(1.0)
    assert {h: out["fixed"][h]["rel"] for h in ("1", "2", "3")} == pytest.approx({"1": 1.0, "2": 0.5, "3": 0.0})
    assert out["fixed"]["2"]["lags"] in ([1, 3], [2, 3])
    assert out["gated"] == pytest.approx({"1": 1.0, "2": 0.0, "3": 0.0})
    assert all(out["exhaustive"].values())


def test_nested_lags_follow_the_memory_read():
    """K = 1: t_2 = g_2(x_t, x_{t-t_1}); the lags reachable from x_t = v are t_1(v) and t_2(v, each token)."""
    cfg = task_config(
        {
            **WARM_UP,
            "lags": [2, 6],
            "depth": 1,
            "g": [{"1": 1, "-1": 2}, {"1,1": 4, "1,-1": 5, "-1,1": 6, "-1,-1": 2}],
        }
    )
    task = oracle.make_task(cfg)
    plus, minus = task.values.index(1.0), task.values.index(-1.0)
    assert reachable_lags(task, plus) == [1, 4, 5] and reachable_lags(task, minus) == [2, 6]
    out = oracle_floors(cfg, [2, 3])
    # x_t = -1: t_2 = 2 = t_1 when x_{t-2} = -1, so y = x_t x_{t-2}^2 is known; the gate reads {2, 6}: 0
    assert out["gated"]["3"] == pytest.approx(0.0) and out["gated"]["2"] > 0
    assert out["fixed"]["3"]["rel"] >= out["gated"]["3"]


def test_floor_matches_the_conditional_mean_of_sampled_sequences():
    """Independent check: the conditional variance of y given x_t and the floor's lags, estimated from the
    task's own sampler, equals the enumerated floor."""
    cfg = task_config(
        {
            "kind": "adaptive",
            "seq_len": 16,
            "input": {"kind": "discrete", "values": [-1, -0.5, 0.5, 1]},
            "lags": [8, 8],
            "depth": 1,
            "readout": "product",
            "output": "last",
            "seed": 3,
        }
    )
    out = oracle_floors(cfg, [2])
    lags = out["fixed"]["2"]["lags"]
    task = oracle.make_task(cfg)
    x, y = task.sample(200_000, torch.Generator().manual_seed(0), torch.float64)
    cols = [x[:, -1, 0]] + [x[:, -1 - lag, 0] for lag in lags]
    key = torch.stack(cols, 1)
    _, group = torch.unique(key, dim=0, return_inverse=True)
    sums = torch.zeros(int(group.max()) + 1, dtype=torch.float64).index_add_(0, group, y)
    counts = torch.bincount(group).double()
    mse = float(((y - (sums / counts)[group]) ** 2).mean())
    assert mse / float(y.var()) == pytest.approx(out["fixed"]["2"]["rel"], rel=0.03)
    assert 0.05 < out["fixed"]["2"]["rel"] < 1.0


def test_greedy_search_bounds_the_exhaustive_one(monkeypatch):
    cfg = task_config(
        {
            **WARM_UP,
            "input": {"kind": "discrete", "values": [-1, -0.5, 0.5, 1]},
            "lags": [9, 9],
            "depth": 1,
            "g": None,
            "seed": 1,
            "seq_len": 16,
        }
    )
    exact = oracle_floors(cfg, [3])
    monkeypatch.setattr(oracle, "EXHAUSTIVE_LIMIT", 0)
    found = oracle_floors(cfg, [3])
    assert exact["exhaustive"]["3"] and not found["exhaustive"]["3"]
    assert found["fixed"]["3"]["rel"] >= exact["fixed"]["3"]["rel"] - 1e-12


def test_oracle_refuses_other_tasks():
    with pytest.raises(ConfigError, match="adaptive task read at the last position"):
        oracle_floors(task_config({"kind": "fixed", "lags": [1, 2], "seq_len": 8, "output": "last"}), [2])
