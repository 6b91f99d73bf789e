"""Config loading, overrides, and the command line, bad input included."""

import json
import os
import subprocess
import sys

import pytest

import sparsemem as sm
from sparsemem.config import ConfigError, apply_overrides


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sparsemem", *args], capture_output=True, text=True, cwd=cwd)


def test_overrides_parse_yaml_values():
    cfg = sm.RunConfig.from_dict(
        {"task": {"kind": "kernel"}},
        [
            "task.kernels=[power:1.5, exp:2]",
            "model.heads=4",
            "model.normalize=false",
            "task.readout.width=7",
            "task.readout.kind=relu_net",
            "train.betas=[0.8, 0.9]",
        ],
    )
    assert cfg.task.kernels == ["power:1.5", "exp:2"]
    assert cfg.model.heads == 4 and cfg.model.normalize is False
    assert cfg.task.readout.kind == "relu_net" and cfg.task.readout.width == 7
    assert cfg.train.betas == (0.8, 0.9)
    # a bare name stands for {kind: name}, so a parameter can be set beside it
    assert apply_overrides({"task": {"input": "discrete"}}, ["task.input.values=[0, 1]"]) == {
        "task": {"input": {"kind": "discrete", "values": [0, 1]}}
    }


def test_yaml_round_trip_and_hash(tmp_path):
    cfg = sm.RunConfig.from_yaml("sparsemem/examples/fixed_sparse_relu.yaml")
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = sm.RunConfig.from_yaml(path)
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert sm.RunConfig.from_yaml(path, ["model.heads=2"]).config_hash() != cfg.config_hash()


@pytest.mark.parametrize(
    "path",
    [
        "sparsemem/examples/fixed_sparse_relu.yaml",
        "sparsemem/examples/adaptive_nested.yaml",
        "sparsemem/examples/kernel_power.yaml",
        "sparsemem/examples/kernel_exp.yaml",
    ],
)
def test_examples_load(path):
    cfg = sm.RunConfig.from_yaml(path)
    task = sm.make_task(cfg.task)
    model = sm.make_model(cfg.model, task)
    import torch

    x, y = task.sample(2, torch.Generator().manual_seed(0))
    assert model(x).shape == y.shape


BAD = [
    (["model.foo=1"], "unknown key model.foo"),
    (["task.bar=1"], "unknown key task.bar"),
    (["model.heads=0"], "model.heads = 0"),
    (["model.dim=0"], "model.dim = 0"),
    (["train.steps=0"], "train.steps = 0"),
    (["model.dim=abc"], "model.dim"),
    (["model.heads=3"], "model.heads = 3"),
    (["task.lags=[2,64]"], "task.lags = 64"),
    (["model.rpe=rope"], "model.rpe"),
    (["task.kind=kernel", "task.kernels=[cauchy:2]"], "task.kernels"),
    (["task.kind=kernel", "task.kernels=[delta:64]"], "task.kernels"),
    (["model.attention=tmx", "model.rpe=t5"], "model.rpe"),
    (["task.kind=adaptive", "task.input=gaussian"], "task.input"),
    (["train.device=tpu"], "train.device"),
    (["model.heads"], "key.path=value"),
]


def _base(overrides):
    """A fixed task with lag 2 under the overrides; a case that names another family keeps it alone."""
    return [] if any(o.startswith("task.kind=") for o in overrides) else ["task.lags=[2]"]


@pytest.mark.parametrize("overrides,needle", BAD)
def test_bad_values_raise_one_line(overrides, needle):
    with pytest.raises(ConfigError) as info:
        sm.RunConfig.from_dict({}, [*_base(overrides), *overrides])
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.parametrize(
    "kind,stray,allowed",
    [
        ("kernel", "task.lags=[2]", "kernels"),
        ("fixed", "task.kernels=[exp:1]", "lags"),
        ("text", "task.readout=sum", "corpus"),
        ("fixed", "task.depth=1", "lags"),
    ],
)
def test_a_key_of_another_task_family_is_refused_with_this_familys_keys(kind, stray, allowed, tmp_path):
    """Each family has its own schema: a field of another family is an unknown key, not silently kept."""
    corpus = [f"task.corpus={tmp_path}", "task.output=all"] if kind == "text" else []
    with pytest.raises(ConfigError) as info:
        sm.RunConfig.from_dict({}, [f"task.kind={kind}", *corpus, stray])
    key = stray.split("=")[0]
    assert str(info.value).startswith(f"unknown key {key}; allowed here:") and allowed in str(info.value)


def test_hashes_keep_the_flat_task_form():
    """A task hashes as the one flat schema did (other families' fields at their defaults), so stores
    written before the families split keep every run's hash."""
    import hashlib

    cfg = sm.RunConfig.from_dict({"task": {"kind": "kernel", "kernels": ["exp:2"]}})
    payload = cfg.to_dict()
    payload.pop("name")
    payload["model"].pop("rpe_sign")
    payload["model"].pop("attention_kernel")  # hashed only when not auto
    payload["train"].pop("blowup")
    payload["train"].pop("log")  # never hashed: how a run is watched
    payload["train"].pop("micro_batch")  # hashed only when set
    payload["train"].pop("autocast")
    payload["task"] = {**sm.config.LEGACY_TASK, **payload["task"]}
    assert set(payload["task"]) == set(sm.config.LEGACY_TASK)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert cfg.config_hash() == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("overrides,needle", BAD[:4] + BAD[7:9])
def test_cli_bad_input_exit_2_and_nothing_written(overrides, needle, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "task.lags=[2]", *overrides, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_cli_unreadable_config(tmp_path):
    missing = run_cli("train", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [\n")
    broken = run_cli("train", str(bad), cwd=tmp_path)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    wrong = run_cli("train", str(listy), cwd=tmp_path)
    for proc, needle in [(missing, "cannot be read"), (broken, "not valid YAML"), (wrong, "must hold a mapping")]:
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_cli_train_json(tmp_path):
    proc = run_cli(
        "train",
        "task.lags=[1,3]",
        "task.seq_len=8",
        "model.dim=4",
        "train.steps=5",
        "train.batch_size=4",
        "train.val_samples=16",
        "--json",
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("val_loss", "train_loss", "steps", "params", "seconds", "status"):
        assert key in result
    assert result["status"] == "done" and result["steps"] == 5
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "final.json",
        "checkpoint.pt",
    }


def test_cli_train_compile(tmp_path):
    """`sparsemem train --compile` trains through torch.compile and says so in its result."""
    args = ["train", "task.lags=[1,3]", "task.seq_len=8", "model.dim=4", "train.steps=5", "train.batch_size=4"]
    args += ["train.val_samples=16", "--json", "--no-progress"]
    env_dir = tmp_path / "inductor"
    proc = subprocess.run(
        [sys.executable, "-m", "sparsemem", *args, "--compile", "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(env_dir)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "done" and result["compiled"] is True


def test_cli_list():
    proc = run_cli("list")
    assert proc.returncode == 0
    text = proc.stdout
    for name in ("kerple_log", "learned", "tmx", "dp_free", "adaptive", "relu_net", "power:BETA", "discrete"):
        assert name in text
