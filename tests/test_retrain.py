"""Each stored run records the engine that trained it, and `sparsemem retrain` trains it again exactly."""

import pytest

from sparsemem.cli import main
from sparsemem.config import ConfigError
from sparsemem.sweep import Store, SweepSpec, run_sweep
from sparsemem.sweep.retrain import retrain

BASE = {
    "task": {"kind": "fixed", "lags": [1, 3], "seq_len": 8},
    "model": {"dim": 4, "ffn_width": 4, "heads": 2},
    "train": {"steps": 20, "batch_size": 8, "val_samples": 16, "eval_every": 10},
}


def _sweep(tmp_path, fleet: str) -> tuple:
    runs = SweepSpec(name="s", base=BASE, grid={"train.lr": [1e-3, 3e-3, 1e-2]}).expand()
    path = tmp_path / "results.db"
    with Store(path) as store:
        run_sweep(runs, store, "s", fleet=fleet, progress=False)
        rows = store.rows()
    return path, rows


def test_fleet_members_record_their_fleet_and_retrain_bit_identically(tmp_path):
    path, rows = _sweep(tmp_path, "auto")
    members = [r["hash"] for r in rows]
    for i, r in enumerate(rows):
        m = r["metrics"]
        assert m["engine"] == "fleet" and m["fleet_size"] == 3
        assert sorted(m["fleet_members"]) == sorted(members) and m["fleet_members"][m["fleet_member"]] == r["hash"]
    out = retrain(path, rows[1]["hash"][:8], progress=False)
    assert out["engine"] == "fleet" and out["fleet_size"] == 3
    assert out["retrained"] == out["stored"] == rows[1]["val_loss"] and out["rel_diff"] == 0.0
    with Store(path, readonly=True) as store:  # the store was only read
        assert [r["metrics"] for r in store.rows()] == [r["metrics"] for r in rows]


def test_a_single_run_records_its_engine_and_retrains_bit_identically(tmp_path, capsys):
    path, rows = _sweep(tmp_path, "off")
    assert all(r["metrics"]["engine"] == "single" and "fleet_members" not in r["metrics"] for r in rows)
    assert main(["retrain", rows[0]["hash"][:10], "--store", str(path), "--no-progress"]) == 0
    line = capsys.readouterr().out
    assert "alone" in line and "bit-identical" in line, line


def test_runs_that_cannot_be_retrained_exactly_are_refused_with_one_line(tmp_path, capsys):
    path, rows = _sweep(tmp_path, "auto")
    with pytest.raises(ConfigError, match="not in the store"):
        retrain(path, "nosuchrun", progress=False)
    with Store(path) as store:  # a row from a version that recorded no fleet members
        old = {k: v for k, v in rows[0]["metrics"].items() if k not in ("engine", "fleet_members", "fleet_member")}
        store.finish(rows[0]["hash"], old)
    assert main(["retrain", rows[0]["hash"][:10], "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not record the fleet's members" in err, err
