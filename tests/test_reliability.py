"""Reliability: damaged run files heal, divergence is recorded on every path, two sweeps on one store
train each shared run once, and sweeps killed at random moments resume exactly."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import sparsemem as sm
from sparsemem.reproduce import reproduce
from sparsemem.sweep import SweepSpec, run_sweep
from sparsemem.sweep.store import Store

SMALL = [
    "task.lags=[2,5]",
    "task.seq_len=16",
    "model.dim=8",
    "model.ffn_width=8",
    "train.batch_size=8",
    "train.val_samples=64",
    "train.steps=20",
    "train.eval_every=5",
]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cfg_of(*overrides):
    return sm.RunConfig.from_dict({}, [*SMALL, *overrides])


def _interrupt_at(monkeypatch, call: int):
    """Make the next training stop (KeyboardInterrupt) at its `call`-th batch."""
    from sparsemem.tasks.base import Task

    original, calls = Task.sample, {"n": 0}

    def flaky(self, batch, generator, dtype=torch.float32):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(self, batch, generator, dtype)

    monkeypatch.setattr(Task, "sample", flaky)
    return lambda: monkeypatch.setattr(Task, "sample", original)


DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "zeroed": lambda b: bytes(len(b)),
    "garbage": lambda b: bytes(random.Random(0).randrange(256) for _ in range(len(b))),
    "one flipped byte": lambda b: b[:-100] + bytes([b[-100] ^ 0x40]) + b[-99:],
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("target", ["checkpoint.pt", "metrics.jsonl", "final.json"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_heal_with_the_same_numbers(target, damage, tmp_path, monkeypatch):
    cfg = cfg_of()
    whole = sm.train(cfg, out_dir=tmp_path / "whole", progress=False)
    out = tmp_path / "run"
    if target == "final.json":  # a finished run whose final.json is damaged
        sm.train(cfg, out_dir=out, progress=False)
    else:  # a run interrupted at step 13, its last checkpoint at step 10
        restore = _interrupt_at(monkeypatch, 13)
        with pytest.raises(KeyboardInterrupt):
            sm.train(cfg, out_dir=out, progress=False)
        restore()
    path = out / target
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    healed = sm.train(cfg, out_dir=out, progress=False)
    assert healed["status"] == "done" and healed["healed"], healed.get("healed")
    assert healed["val_loss"] == whole["val_loss"] and healed["train_loss"] == whole["train_loss"]
    assert healed["curve"] == whole["curve"] and [s for s, _ in whole["curve"]] == [5, 10, 15, 20]
    for p, q in zip(whole["model"].parameters(), healed["model"].parameters()):
        assert torch.equal(p, q)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]
    assert json.loads((out / "final.json").read_text())["val_loss"] == whole["val_loss"]


def test_a_partial_last_metrics_line_is_not_damage(tmp_path, monkeypatch):
    """A kill mid-write leaves a partial line after the checkpoint's evaluations: resumed, not restarted."""
    cfg = cfg_of()
    whole = sm.train(cfg, out_dir=tmp_path / "whole", progress=False)
    out = tmp_path / "run"
    restore = _interrupt_at(monkeypatch, 13)
    with pytest.raises(KeyboardInterrupt):
        sm.train(cfg, out_dir=out, progress=False)
    restore()
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 15, "train_lo')
    resumed = sm.train(cfg, out_dir=out, progress=False)
    assert "healed" not in resumed and resumed["val_loss"] == whole["val_loss"]


def _fleet_cfgs():
    return [cfg_of(f"train.lr={lr}") for lr in (1e-3, 2e-3, 3e-3)]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "one flipped byte"])
def test_damaged_fleet_checkpoint_heals(damage, tmp_path, monkeypatch):
    cfgs = _fleet_cfgs()
    whole = sm.train_fleet(cfgs, progress=False)
    outs = [tmp_path / f"m{i}" for i in range(3)]
    restore = _interrupt_at(monkeypatch, 13)
    with pytest.raises(KeyboardInterrupt):
        sm.train_fleet(cfgs, outs, tmp_path / "fleet", progress=False)
    restore()
    ckpt = tmp_path / "fleet" / "checkpoint.pt"
    ckpt.write_bytes(DAMAGE[damage](ckpt.read_bytes()))
    healed = sm.train_fleet(cfgs, outs, tmp_path / "fleet", progress=False)
    for a, b, out in zip(whole, healed, outs):
        assert b["healed"] and b["status"] == "done" and b["val_loss"] == a["val_loss"]
        assert b["curve"] == a["curve"]
        steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert steps == [5, 10, 15, 20]


def test_healing_is_logged_in_the_store(tmp_path):
    spec = {
        "name": "h",
        "base": {
            "task": {"lags": [2, 5], "seq_len": 16},
            "model": {"dim": 8, "ffn_width": 8},
            "train": {"batch_size": 8, "val_samples": 64, "steps": 20, "eval_every": 5},
        },
        "grid": {"model.heads": [1, 2]},
    }
    runs = SweepSpec.model_validate(spec).expand()
    with Store(tmp_path / "r.db") as store:
        run_sweep(runs, store, "h", runs_dir=tmp_path / "runs", progress=False, fleet="off")
        victim = tmp_path / "runs" / runs[0].config_hash()[:16]
        (victim / "final.json").write_text("{not json")
        (victim / "checkpoint.pt").write_bytes(b"\0" * 64)
        with store._tx() as db:  # as if the run had never been recorded
            db.execute("UPDATE runs SET status = 'pending' WHERE hash = ?", (runs[0].config_hash(),))
        summary = run_sweep(runs, store, "h", runs_dir=tmp_path / "runs", progress=False, fleet="off")
        assert summary["done"] == 1
        events = store.events(runs[0].config_hash())
    assert [e["kind"] for e in events] == ["healed", "healed"]
    assert "final.json" in events[0]["detail"] and "checkpoint.pt" in events[1]["detail"]


# -- divergence ----------------------------------------------------------------------------
NAN_AT_ONCE = ["train.lr=1e30"]  # NaN at step 2, before the first evaluation


def test_divergence_before_the_first_evaluation_through_train(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsemem",
            "train",
            *SMALL,
            *NAN_AT_ONCE,
            "--out",
            str(tmp_path / "r"),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])  # standard JSON: no NaN
    assert result["status"] == "diverged" and result["diverged_step"] == 2 and result["val_loss"] is None
    assert "diverged at step 2" in proc.stderr
    assert json.loads((tmp_path / "r" / "final.json").read_text())["status"] == "diverged"


def test_a_loss_that_explodes_but_stays_finite_diverges():
    """lr = 1e3 on a DP-free model: the loss grows past 1e30 x Var(y) yet stays finite."""
    exploding = ("model.attention=dp_free", "train.lr=1e3")
    off = sm.train(cfg_of(*exploding, "train.blowup=0"), progress=False)
    assert off["status"] == "done" and off["val_rel"] > 1e12  # what the blow-up rule is for
    result = sm.train(cfg_of(*exploding), progress=False)
    assert result["status"] == "diverged" and result["diverged_step"] <= 20
    assert result["diverged_loss"] > 1e6 * result["var_y"]


def test_divergence_through_sweep_and_fleets(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "d",
                "base": {
                    "task": {"lags": [2, 5], "seq_len": 16},
                    "model": {"dim": 8, "ffn_width": 8},
                    "train": {"batch_size": 8, "val_samples": 64, "steps": 20, "eval_every": 5},
                },
                "grid": {"train.lr": [1e-3, 1e30]},
            }
        )
    )
    for fleet in ("auto", "off"):
        store = tmp_path / f"{fleet}.db"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sparsemem",
                "sweep",
                str(spec),
                "--store",
                str(store),
                "--fleet",
                fleet,
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert proc.returncode == 0, proc.stderr
        with Store(store, readonly=True) as st:
            rows = {r["config"]["train"]["lr"]: r for r in st.rows()}
        assert rows[1e-3]["status"] == "done"
        assert rows[1e30]["status"] == "diverged" and rows[1e30]["metrics"]["diverged_step"] == 2


def test_divergence_through_reproduce(tmp_path, monkeypatch):
    """A reproduction whose run diverges before its first evaluation: recorded, reported, exit 0."""
    from sparsemem import experiments

    exp = experiments.EXPERIMENTS["4b"]
    small = lambda profile, corpus=None: [
        SweepSpec.model_validate(
            {  # noqa: E731
                "name": "4b",
                "base": {
                    "task": {"kind": "kernel", "kernels": ["exp:5"], "seq_len": 16},
                    "model": {"dim": 8, "ffn_width": 0, "attention": "dp_free", "rpe": "lin"},
                    "train": {"batch_size": 8, "val_samples": 64, "steps": 10},
                },
                "grid": {"train.lr": [1e-2, 1e30]},
            }
        )
    ]
    monkeypatch.setattr(exp, "make_specs", small)
    result = reproduce(["4b"], out=tmp_path / "o", progress=False)
    assert result["summary"]["diverged"] == 1 and result["summary"]["failed"] == 0
    with Store(tmp_path / "o" / "results.db", readonly=True) as st:
        statuses = sorted(r["status"] for r in st.rows())
    assert statuses == ["diverged", "done"] and (tmp_path / "o" / "REPORT.md").exists()


# -- two sweeps on one store ---------------------------------------------------------------------
def _spec(path: Path, name: str, heads: list, steps: int = 60, every: int = 10) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "base": {
                    "task": {"lags": [2, 5], "seq_len": 16},
                    "model": {"dim": 8, "ffn_width": 8},
                    "train": {"batch_size": 8, "val_samples": 64, "steps": steps, "eval_every": every},
                },
                "grid": {"model.heads": heads},
            }
        )
    )
    return path


@pytest.mark.parametrize("fleet", ["off", "auto"])
def test_two_sweeps_on_one_store_train_each_shared_run_once(fleet, tmp_path):
    a = _spec(tmp_path / "a.yaml", "a", [1, 2, 4, 8])
    b = _spec(tmp_path / "b.yaml", "b", [2, 4, 8])  # shares three runs with a
    store = tmp_path / "r.db"
    cmd = lambda spec: [
        sys.executable,
        "-m",
        "sparsemem",
        "sweep",
        str(spec),
        "--store",
        str(store),  # noqa: E731
        "--fleet",
        fleet,
        "--no-progress",
    ]
    procs = [
        subprocess.Popen(cmd(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for s in (a, b)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with Store(store, readonly=True) as st:
        rows = st.rows()
        assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
        assert all(r["attempts"] == 1 for r in rows), [(r["name"], r["attempts"]) for r in rows]
    for r in rows:  # every evaluation written once: one training pass per run
        steps = [
            json.loads(x)["step"]
            for x in (tmp_path / "runs" / r["hash"][:16] / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == [10, 20, 30, 40, 50, 60], r["name"]


def test_a_claim_of_a_dead_owner_is_taken_over(tmp_path):
    from sparsemem.sweep.claims import owner_gone

    cfg = cfg_of()
    with Store(tmp_path / "r.db") as store:
        store.add("s", [(cfg.config_hash(), "x", cfg.to_dict())])
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        ghost = f"{os.uname().nodename}:{dead.pid}:feed"
        assert owner_gone(ghost) and not owner_gone(f"{os.uname().nodename}:{os.getpid()}:x")
        assert not owner_gone("another-host:1:x")  # unknown: only its lease can tell
        assert store.claim([cfg.config_hash()], ghost) == [cfg.config_hash()]
        summary = run_sweep([cfg], store, None, runs_dir=tmp_path / "runs", progress=False)
        assert summary["done"] == 1 and summary["elsewhere"] == 0
        assert [e["kind"] for e in store.events()] == ["takeover"] and ghost in store.events()[0]["detail"]
        assert store.get(cfg.config_hash())["attempts"] == 2


def test_a_live_claim_is_not_taken(tmp_path):
    cfg = cfg_of()
    with Store(tmp_path / "r.db") as store:
        store.add("s", [(cfg.config_hash(), "x", cfg.to_dict())])
        assert store.claim([cfg.config_hash()], "another-host:1:x") == [cfg.config_hash()]
        assert store.claim([cfg.config_hash()], "yet-another-host:2:y") == []
        assert store.held_elsewhere([cfg.config_hash()], "yet-another-host:2:y") == [cfg.config_hash()]


def test_a_live_claim_elsewhere_is_waited_for_then_taken_when_it_lapses(tmp_path):
    cfg = cfg_of()
    with Store(tmp_path / "r.db") as store:
        store.add("s", [(cfg.config_hash(), "x", cfg.to_dict())])
        assert store.claim([cfg.config_hash()], "another-host:1:x", lease=1.0) == [cfg.config_hash()]
        t0 = time.monotonic()
        summary = run_sweep([cfg], store, None, runs_dir=tmp_path / "runs", progress=False, lease=2.0)
        assert summary["done"] == 1 and time.monotonic() - t0 >= 0.5
        assert store.get(cfg.config_hash())["attempts"] == 2


# -- sweeps killed at random moments ---------------------------------------------------------------
KILL_TRIALS = 10


def test_sweeps_killed_at_random_moments_resume_exactly(tmp_path):
    """A 12-run sweep with 2 workers, SIGKILLed (the driver and its workers) at random moments, then
    resumed, up to ten times over: every run done once, no row lost or duplicated, the same numbers as an
    uninterrupted sweep. The moments are drawn as fractions of the uninterrupted sweep's own wall time, so
    the test kills mid-sweep on a fast machine and a slow one alike."""
    spec = _spec(tmp_path / "s.yaml", "k", [1, 2, 4, 8], steps=1500, every=100)
    spec_data = yaml.safe_load(spec.read_text())
    spec_data["grid"]["model.rpe"] = ["lin", "log", "learned"]
    spec.write_text(yaml.safe_dump(spec_data))
    cmd = lambda store: [
        sys.executable,
        "-m",
        "sparsemem",
        "sweep",
        str(spec),
        "--store",
        str(store),  # noqa: E731
        "--workers",
        "2",
        "--fleet",
        "off",
        "--no-progress",
    ]
    reference = tmp_path / "ref" / "r.db"
    t0 = time.monotonic()
    assert subprocess.run(cmd(reference), capture_output=True, env=ENV).returncode == 0
    whole = time.monotonic() - t0
    with Store(reference, readonly=True) as st:
        want = {r["hash"]: (r["val_loss"], r["train_loss"]) for r in st.rows()}
        curves = {r["hash"]: r["metrics"]["curve"] for r in st.rows()}
    assert len(want) == 12

    rng = random.Random(1)
    store = tmp_path / "kill" / "r.db"
    kills = 0
    for trial in range(KILL_TRIALS):
        proc = subprocess.Popen(
            cmd(store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, start_new_session=True
        )
        time.sleep(rng.uniform(0.08, 0.3) * whole)
        if proc.poll() is not None:  # it finished: nothing left to kill
            break
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool workers, at once
        kills += 1
        proc.wait()
    with Store(store, readonly=True) as st:
        done_before = sum(r["status"] == "done" for r in st.rows())
    assert subprocess.run(cmd(store), capture_output=True, env=ENV).returncode == 0
    with Store(store, readonly=True) as st:
        rows = st.rows()
    print(f"uninterrupted sweep {whole:.1f} s; kills: {kills}; runs done before the last resume: {done_before}")
    assert kills >= 5  # killed mid-sweep, again and again
    assert len(rows) == 12 and all(r["status"] == "done" for r in rows)
    assert {r["hash"]: (r["val_loss"], r["train_loss"]) for r in rows} == want
    assert {r["hash"]: r["metrics"]["curve"] for r in rows} == curves  # every evaluation once, in the store
    for r in rows:
        steps = [
            json.loads(x)["step"]
            for x in (store.parent / "runs" / r["hash"][:16] / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == list(range(100, 1501, 100)), r["name"]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_pool_workers_end_when_their_driver_is_killed_alone(tmp_path):
    """SIGKILL to the driver alone (not its process group): its pool workers end within seconds instead of
    finishing their runs into folders a resumed sweep takes over; the resumed sweep's metrics files then
    hold every evaluation once."""
    spec = _spec(tmp_path / "s.yaml", "k", [1, 2, 4, 8], steps=3000, every=100)
    store = tmp_path / "r.db"
    cmd = [
        sys.executable,
        "-m",
        "sparsemem",
        "sweep",
        str(spec),
        "--store",
        str(store),
        "--workers",
        "2",
        "--fleet",
        "off",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/metrics.jsonl")):
        time.sleep(0.2)  # a run is training in a worker
    workers = [p for p in _children(proc.pid) if "spawn" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert workers, "no pool worker found"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.1)
    alive = [
        p
        for p in workers
        if Path(f"/proc/{p}").exists() and (Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")
    ]
    assert not alive, f"workers {alive} outlived their driver"
    assert subprocess.run(cmd, capture_output=True, env=ENV).returncode == 0
    with Store(store, readonly=True) as st:
        rows = st.rows()
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    for r in rows:
        steps = [
            json.loads(x)["step"]
            for x in (tmp_path / "runs" / r["hash"][:16] / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == list(range(100, 3001, 100)), r["name"]
