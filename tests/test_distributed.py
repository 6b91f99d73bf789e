"""Data-parallel training under torchrun on the CPU (gloo, 2 processes): the same losses as one process
with the same global batch; rank 0 alone writes; a killed run resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import sparsemem as sm

TOY = [
    "task.lags=[2,5]",
    "task.seq_len=16",
    "model.dim=8",
    "model.ffn_width=8",
    "train.batch_size=8",
    "train.val_samples=32",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(args, cwd, nproc=2, **kw):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "sparsemem",
        "train",
        *args,
        "--no-progress",
    ]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600, **kw)


def single(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sparsemem", "train", *args, "--no-progress"],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    words = "the cat sat on the mat and the dog ran to the log ".split()
    (folder / "a.txt").write_text(" ".join(words[(i * 7) % len(words)] for i in range(4000)))
    return folder


@pytest.mark.parametrize("kind", ["toy", "text"])
def test_two_gloo_processes_match_one_process_with_the_global_batch(tmp_path, kind, corpus):
    over = (
        TOY
        if kind == "toy"
        else [
            "task.kind=text",
            "task.output=all",
            f"task.corpus={corpus}",
            "task.seq_len=16",
            "model.dim=16",
            "model.head_dim=8",
            "model.ffn_width=32",
            "model.layers=2",
            "model.layer_norm=true",
            "train.batch_size=8",
            "train.val_samples=16",
            "train.lr=3e-3",
        ]
    )
    args = [*over, "train.steps=20", "train.eval_every=1"]
    one = single([*args, "--out", "one"], tmp_path)
    two = torchrun([*args, "--out", "two"], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 21))
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)
    assert two.stdout.count("done: 20 steps") == 1  # rank 0 reports; the other rank is quiet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "one", "two"]  # nothing written elsewhere


def test_micro_batches_on_two_processes_match_one_process(tmp_path):
    args = [*TOY, "train.steps=10", "train.eval_every=1"]
    one = single([*args, "--out", "one"], tmp_path)
    two = torchrun([*args, "train.micro_batch=2", "--out", "two"], tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    for x, y in zip(rows(tmp_path / "one"), rows(tmp_path / "two")):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)


def test_a_killed_data_parallel_run_resumes_exactly(tmp_path):
    args = [*TOY, "train.steps=600", "train.eval_every=100", "train.checkpoint_every=100"]
    ref = single([*args, "--out", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sparsemem",
        "train",
        *args,
        "--out",
        "dp",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not (tmp_path / "dp" / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run ended before its first checkpoint"
    again = torchrun([*args, "--out", "dp"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = rows(tmp_path / "ref"), rows(tmp_path / "dp")
    assert [r["step"] for r in b] == list(range(100, 601, 100))  # every evaluation once
    for x, y in zip(a, b):
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)
    final = json.loads((tmp_path / "dp" / "final.json").read_text())
    assert final["steps"] == 600 and final["val_loss"] == pytest.approx(a[-1]["val_loss"], abs=1e-5)
    # finished: a third call returns the stored result on every rank without training
    third = torchrun([*args, "--out", "dp"], tmp_path)
    assert third.returncode == 0 and third.stdout.count("done: 600 steps") == 1


def test_a_global_batch_that_does_not_split_is_one_line_exit_2(tmp_path):
    out = torchrun([*TOY, "train.batch_size=7", "train.steps=2", "--out", "x"], tmp_path)
    assert out.returncode != 0
    assert "train.batch_size = 7: the global batch must split evenly over the 2 processes" in out.stderr
    assert not (tmp_path / "x").exists()


def test_one_process_is_the_plain_path(monkeypatch):
    from sparsemem.distributed import context

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert context("cpu", 8) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert context("cpu", 7) is None
    assert sm.RunConfig.from_dict({}, TOY).train.batch_size == 8


def test_reproduce_under_torchrun_trains_each_run_data_parallel(tmp_path, corpus):
    """`torchrun -m sparsemem reproduce 1a_text`: rank 0 runs the sweep and writes the store and report, the
    other rank trains every run with it; the losses equal those of a one-process reproduction with the same
    global batch, and the run folders and store hold one copy of each run."""
    over = ["train.steps=6", "train.eval_every=3", "train.val_samples=16"]
    base = ["reproduce", "1a_text", *over, "--profile", "quick", "--corpus", str(corpus), "--no-progress"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sparsemem"]
    ddp = subprocess.run(
        [*cmd, *base, "--out", str(tmp_path / "ddp")], env=ENV, capture_output=True, text=True, timeout=600
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "sparsemem", *base, "--out", str(tmp_path / "one")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert ddp.stdout.count("report:") == 1  # rank 0 alone reports
    a, b = (sm.load_results(tmp_path / d / "results.db") for d in ("ddp", "one"))
    assert len(a) == len(b) == 3 and set(a["status"]) == {"done"}
    merged = a.set_index("hash")["val_loss"].to_frame("ddp").join(b.set_index("hash")["val_loss"].to_frame("one"))
    assert len(merged) == 3 and ((merged["ddp"] - merged["one"]).abs() <= 1e-5 * merged["one"].abs()).all(), merged
    assert len(list((tmp_path / "ddp" / "runs").iterdir())) == 3 and (tmp_path / "ddp" / "REPORT.md").exists()
    bad = subprocess.run(
        [*cmd, *base, "--out", str(tmp_path / "bad"), "--workers", "2"], env=ENV, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "use --workers 1 --backend local" in bad.stderr
    assert not (tmp_path / "bad").exists()
