"""Sweep expansion and hashing, the store, local and Ray runners, resume after a kill."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

import sparsemem as sm
from sparsemem.sweep import Store, SweepSpec, load_spec, run_sweep

TINY = {
    "task": {"kind": "fixed", "lags": [1, 3], "seq_len": 8},
    "model": {"dim": 4, "ffn_width": 4, "heads": 2},
    "train": {"steps": 3, "batch_size": 4, "val_samples": 8},
}


def tiny_spec(name="tiny", base=None, **kw):
    return SweepSpec(name=name, base=base or TINY, **kw)


def test_expansion_and_hashing():
    s = tiny_spec(
        grid={"model.heads": [1, 2], "model.rpe": ["lin", "log"]},
        seeds=[0, 1],
        cases=[{"model.layers": 1}, {"model.layers": 2, "model.attention": "dp_free"}],
    )
    runs = s.expand()
    assert len(runs) == 2 * 2 * 2 * 2
    hashes = [c.config_hash() for c in runs]
    assert len(set(hashes)) == len(hashes)
    direct = sm.RunConfig.from_dict(
        TINY, ["model.layers=2", "model.attention=dp_free", "model.heads=2", "model.rpe=log", "train.seed=1"]
    )
    assert direct.config_hash() in hashes
    # names do not enter the hash; any other change does
    assert direct.model_copy(update={"name": "x"}).config_hash() == direct.config_hash()
    # duplicates across cases collapse to one run
    dup = tiny_spec(grid={"model.heads": [1]}, cases=[{}, {"model.heads": 1}])
    assert len(dup.expand()) == 1


def test_spec_file_with_base_path_and_errors(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump({"name": "f", "base": "base.yaml", "grid": {"model.heads": [1, 2]}})
    )
    spec = load_spec(tmp_path / "s.yaml", ["train.steps=2"])
    assert [c.train.steps for c in spec.expand()] == [2, 2]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "b", "base": TINY, "grid": {"model.heads": [0]}}))
    with pytest.raises(sm.ConfigError, match="model.heads"):
        load_spec(tmp_path / "bad.yaml").expand()
    (tmp_path / "bad2.yaml").write_text(yaml.safe_dump({"name": "b", "grdi": {}}))
    with pytest.raises(sm.ConfigError, match="unknown key grdi"):
        load_spec(tmp_path / "bad2.yaml")


def test_example_sweep_spec():
    runs = load_spec("sparsemem/examples/sweep_kernel_heads.yaml").expand()
    assert len(runs) == 8 and {r.task.kind for r in runs} == {"kernel"}
    assert {(r.model.rpe, r.model.heads) for r in runs} == {(p, h) for p in ("log", "lin") for h in (1, 2, 4, 8)}


def test_store_rows_members_and_wal(tmp_path):
    runs = tiny_spec(grid={"model.heads": [1, 2]}).expand()
    with Store(tmp_path / "r.db") as store:
        entries = [(c.config_hash(), c.name, c.to_dict()) for c in runs]
        assert store.add("a", entries) == 2
        assert store.add("a", entries) == 0
        assert store.add("b", entries[:1]) == 0  # shared run, second sweep
        assert len(store.rows()) == 2 and len(store.rows(sweep="b")) == 1
        store.mark_running(entries[0][0])
        store.finish(entries[0][0], {"status": "done", "val_loss": 0.5, "steps": 3})
        store.fail(entries[1][0], "boom")
        assert store.counts("a") == {"pending": 0, "running": 0, "done": 1, "failed": 1, "diverged": 0}
        row = store.get(entries[0][0])
        assert row["val_loss"] == 0.5 and row["attempts"] == 1 and row["config"]["model"]["heads"] == 1
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("workers,fleet", [(1, "auto"), (2, "auto"), (1, "off"), (2, "off")])
def test_local_sweep_runs_and_skips_finished(tmp_path, workers, fleet):
    runs = tiny_spec(grid={"model.heads": [1, 2], "model.attention": ["dp", "dp_free"]}).expand()
    with Store(tmp_path / "r.db") as store:
        first = run_sweep(runs, store, "t", workers=workers, progress=False, fleet=fleet)
        # one fleet of two squads (halved for two workers), or four single runs
        jobs, fleets = (workers, workers) if fleet == "auto" else (4, 0)
        assert first == {
            "total": 4,
            "skipped": 0,
            "done": 4,
            "diverged": 0,
            "failed": 0,
            "jobs": jobs,
            "fleets": fleets,
            "elsewhere": 0,
        }
        again = run_sweep(runs, store, "t", workers=workers, progress=False, fleet=fleet)
        assert again["skipped"] == 4 and again["done"] == 0
        rows = store.rows(sweep="t")
    assert len(rows) == 4 and all(r["status"] == "done" and r["steps"] == 3 for r in rows)
    assert all(r["attempts"] == 1 for r in rows)


def test_failed_and_diverged_runs_are_recorded(tmp_path, monkeypatch):
    runs = tiny_spec(
        grid={"train.lr": [1e-3, 1e3]}, base={**TINY, "model": {**TINY["model"], "attention": "dp", "normalize": False}}
    ).expand()
    runs[0] = runs[0].model_copy(update={"train": runs[0].train.model_copy(update={"device": "cuda:7"})})
    with Store(tmp_path / "r.db") as store:
        summary = run_sweep(runs, store, "t", progress=False)
        rows = {r["hash"]: r for r in store.rows()}
    assert summary["failed"] == 1 and summary["diverged"] == 1
    failed = rows[runs[0].config_hash()]
    assert failed["status"] == "failed" and "CUDA is not available" in failed["error"]
    diverged = rows[runs[1].config_hash()]
    assert diverged["status"] == "diverged" and diverged["metrics"]["diverged_step"] >= 1


@pytest.mark.parametrize("fleet", ["off", "auto"])
def test_resume_after_killed_sweep(tmp_path, fleet):
    """SIGKILL mid-sweep, rerun: every run finishes once, killed ones from their (fleet's) last checkpoint."""
    spec = {
        "name": "k",
        "base": {
            **TINY,
            "task": {**TINY["task"], "seq_len": 64},
            "model": {"dim": 32, "ffn_width": 64, "heads": 4, "layers": 2},
            "train": {"steps": 600, "batch_size": 32, "val_samples": 16, "eval_every": 50},
        },
        "grid": {"train.seed": [0, 1, 2, 3, 4, 5]},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    store_path = tmp_path / "r.db"
    # with fleets: two fleets of three members, one per worker
    cmd = [
        sys.executable,
        "-m",
        "sparsemem",
        "sweep",
        str(tmp_path / "s.yaml"),
        "--store",
        str(store_path),
        "--workers",
        "2",
        "--no-progress",
        "--fleet",
        fleet,
        "--fleet-size",
        "3",
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    interrupted = False
    while time.time() < deadline:
        time.sleep(0.5)
        if not store_path.exists():
            continue
        with Store(store_path) as store:
            counts = store.counts()
            running = store.rows(status=["running"])
        if fleet == "off":
            ready = counts["done"] >= 1 and any(
                (tmp_path / "runs" / r["hash"][:16] / "checkpoint.pt").exists() for r in running
            )
        else:
            ready = len(running) == 6 and len(list((tmp_path / "runs").glob("fleet-*/checkpoint.pt"))) == 2
        if ready:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
            interrupted = True
            break
    proc.wait()
    assert interrupted, "the sweep finished before it could be killed"
    with Store(store_path) as store:
        killed = {r["hash"] for r in store.rows(status=["running"])}
        assert killed
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    with Store(store_path) as store:
        rows = store.rows()
    assert len(rows) == 6 and len({r["hash"] for r in rows}) == 6
    assert all(r["status"] == "done" and r["steps"] == 600 for r in rows)
    for r in rows:  # killed runs ran again, from their checkpoints; finished ones did not
        assert r["attempts"] == (2 if r["hash"] in killed else 1)
        metrics = [
            json.loads(line)["step"]
            for line in (tmp_path / "runs" / r["hash"][:16] / "metrics.jsonl").read_text().splitlines()
        ]
        assert metrics == list(range(50, 601, 50))
        if fleet == "auto":
            assert r["metrics"]["fleet_size"] == 3 and r["metrics"]["resumed_from"] >= 50


def test_ray_backend(tmp_path):
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    runs = tiny_spec(grid={"model.heads": [1, 2], "model.rpe": ["lin", "log"]}).expand()
    with Store(tmp_path / "r.db") as store:
        summary = run_sweep(
            runs, store, "ray", workers=2, backend="ray", progress=False, ray_temp_dir=str(tmp_path / "ray")
        )
        rows = store.rows(sweep="ray")
    assert not ray.is_initialized()
    assert summary["done"] == 4 and all(r["status"] == "done" for r in rows)
    # same numbers as the local backend
    with Store(tmp_path / "l.db") as store:
        run_sweep(runs, store, "local", progress=False, runs_dir=tmp_path / "lruns")
        local = {r["hash"]: r["val_loss"] for r in store.rows()}
    assert {r["hash"]: r["val_loss"] for r in rows} == local


def test_cli_sweep_and_bad_input(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "c", "base": TINY, "grid": {"model.heads": [1, 2]}}))
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsemem",
            "sweep",
            str(tmp_path / "s.yaml"),
            "--store",
            str(tmp_path / "c.db"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "2 done" in ok.stdout
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"name": "c", "base": TINY, "grid": {"model.rpe": ["rope"]}}))
    bad = subprocess.run(
        [sys.executable, "-m", "sparsemem", "sweep", str(tmp_path / "b.yaml"), "--store", str(tmp_path / "b.db")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "model.rpe" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    workers = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsemem",
            "sweep",
            str(tmp_path / "s.yaml"),
            "--store",
            str(tmp_path / "w.db"),
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert workers.returncode == 2 and "--workers" in workers.stderr
    assert not (tmp_path / "w.db").exists() and not (tmp_path / "b.db").exists()


def test_seed_task_draws_the_task_with_the_seed():
    """seed_task: seed s sets task.seed = s, so the spread over seeds covers the task draw; the run names
    stay as without it, and an experiment's sweeps use it."""
    from sparsemem.experiments import EXPERIMENTS, expand_all
    from sparsemem.sweep.spec import SweepSpec

    plain = SweepSpec(name="s", grid={"model.heads": [1, 2]}, seeds=[0, 3]).expand()
    drawn = SweepSpec(name="s", grid={"model.heads": [1, 2]}, seeds=[0, 3], seed_task=True).expand()
    assert [c.task.seed for c in plain] == [0, 0, 0, 0]
    assert [(c.train.seed, c.task.seed) for c in drawn] == [(0, 0), (3, 3), (0, 0), (3, 3)]
    assert [c.name for c in plain] == [c.name for c in drawn]
    runs = expand_all(EXPERIMENTS["1b"].make_specs("quick"))
    assert {(c.train.seed, c.task.seed) for c in runs} == {(0, 0), (1, 1)}
