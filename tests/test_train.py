"""Training: learning, determinism, resume, divergence, run folder, schedule."""

import json

import pytest
import torch

import sparsemem as sm
from sparsemem.training import lr_factor

SMALL = [
    "task.lags=[2,5]",
    "task.seq_len=16",
    "model.dim=8",
    "model.ffn_width=8",
    "train.batch_size=8",
    "train.val_samples=64",
]


def cfg_of(*overrides):
    return sm.RunConfig.from_dict({}, [*SMALL, *overrides])


def test_one_head_dp_free_lin_learns_exp_kernel():
    cfg = sm.RunConfig.from_dict(
        {},
        [
            "task.kind=kernel",
            "task.kernels=[exp:0.5]",
            "task.seq_len=128",
            "model.attention=dp_free",
            "model.rpe=lin",
            "model.heads=1",
            "model.dim=8",
            "model.ffn_width=0",
            "train.steps=500",
            "train.lr=0.01",
            "train.batch_size=64",
            "train.val_samples=500",
        ],
    )
    result = sm.train(cfg, progress=False)
    assert result["status"] == "done" and result["steps"] == 500
    assert result["val_loss"] < 1e-3
    # the learned head is the target's kernel: p -> 0.5
    p = result["model"].attn[0].rpe.p.item()
    assert p == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_defaults_learn_an_exp_kernel_with_one_lin_head(tmp_path, seed):
    """`sparsemem train` with only a task, an architecture and a step count: the default optimizer (memory
    parameters at 30x the lr, cosine) takes one DP-free lin head to an exp:0.3 kernel at T = 256 within
    1,500 steps; with the memory parameters at the common lr it stalls near 1e-2 relative MSE."""
    base = [
        "task.kind=kernel",
        "task.kernels=[exp:0.3]",
        "task.seq_len=256",
        "model.heads=1",
        "model.rpe=lin",
        "model.attention=dp_free",
        "model.ffn_width=0",
        "train.steps=1500",
        f"train.seed={seed}",
    ]
    result = sm.train(sm.RunConfig.from_dict({}, base), out_dir=tmp_path / "d", progress=False)
    assert result["status"] == "done" and result["val_rel"] < 1e-6
    slow = sm.train(
        sm.RunConfig.from_dict({}, [*base, "train.rpe_lr_scale=1", "train.schedule=constant"]),
        out_dir=tmp_path / "s",
        progress=False,
    )
    assert slow["val_rel"] > 1e-4


def test_same_seed_same_numbers():
    a = sm.train(cfg_of("train.steps=15"), progress=False)
    b = sm.train(cfg_of("train.steps=15"), progress=False)
    c = sm.train(cfg_of("train.steps=15", "train.seed=1"), progress=False)
    assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]
    for p, q in zip(a["model"].parameters(), b["model"].parameters()):
        assert torch.equal(p, q)
    assert c["val_loss"] != a["val_loss"]


def test_run_folder_and_resume_after_interrupt(tmp_path, monkeypatch):
    cfg = cfg_of("train.steps=20", "train.eval_every=5", "train.schedule=cosine", "train.warmup_steps=3")
    whole = sm.train(cfg, out_dir=tmp_path / "whole", progress=False)

    # interrupt the second run at step 13: the last checkpoint is at step 10
    from sparsemem.tasks.base import Task

    calls = {"n": 0}
    original = Task.sample

    def flaky(self, batch, generator, dtype=torch.float32):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return original(self, batch, generator, dtype)

    monkeypatch.setattr(Task, "sample", flaky)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        sm.train(cfg, out_dir=out, progress=False)
    assert not (out / "final.json").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 10
    monkeypatch.setattr(Task, "sample", original)
    resumed = sm.train(cfg, out_dir=out, progress=False)

    assert resumed["val_loss"] == whole["val_loss"] and resumed["train_loss"] == whole["train_loss"]
    for p, q in zip(whole["model"].parameters(), resumed["model"].parameters()):
        assert torch.equal(p, q)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "done" and final["val_loss"] == whole["val_loss"]
    again = sm.RunConfig.from_yaml(out / "config.yaml")
    assert again.config_hash() == cfg.config_hash()
    # a finished run folder returns its result without training again
    assert sm.train(cfg, out_dir=out, progress=False)["seconds"] == final["seconds"]


def test_other_config_in_same_folder_is_refused(tmp_path):
    sm.train(cfg_of("train.steps=4"), out_dir=tmp_path, progress=False)
    (tmp_path / "final.json").unlink()
    with pytest.raises(sm.ConfigError, match="another config"):
        sm.train(cfg_of("train.steps=5"), out_dir=tmp_path, progress=False)


def test_divergence_is_recorded(tmp_path):
    cfg = cfg_of("model.attention=dp", "model.normalize=false", "train.lr=1000", "train.steps=50")
    result = sm.train(cfg, out_dir=tmp_path, progress=False)
    assert result["status"] == "diverged"
    assert 1 <= result["diverged_step"] < 50
    assert json.loads((tmp_path / "final.json").read_text())["diverged_step"] == result["diverged_step"]


def test_lr_schedule():
    tc = sm.TrainConfig(steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, tc) == pytest.approx(0.1)
    assert lr_factor(9, tc) == pytest.approx(1.0)
    assert lr_factor(10, tc) == pytest.approx(1.0)
    assert lr_factor(55, tc) == pytest.approx(0.55)
    assert lr_factor(100, tc) == pytest.approx(0.1)
    assert lr_factor(50, sm.TrainConfig(steps=100, schedule="constant")) == 1.0
    assert lr_factor(50, sm.TrainConfig(steps=100)) == pytest.approx(0.5)  # the default: cosine to 0


def test_val_rel_is_mse_over_target_variance():
    result = sm.train(cfg_of("train.steps=3"), progress=False)
    assert result["val_rel"] == pytest.approx(result["val_loss"] / result["var_y"])
    assert result["var_y"] == pytest.approx(2.0, rel=0.25)  # x_{t-2} + x_{t-5}, Rademacher


def test_eval_lengths_score_the_trained_model_at_other_lengths():
    cfg = cfg_of("train.steps=5", "train.eval_lengths=[32, 64]")
    result = sm.train(cfg, progress=False)
    assert set(result["length_eval"]) == {"32", "64"}
    # the same model at its own length gives the recorded validation loss
    again = sm.train(
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"eval_lengths": [16]})}), progress=False
    )
    assert again["length_eval"]["16"]["val_loss"] == pytest.approx(again["val_loss"])
    with pytest.raises(sm.ConfigError, match="train.eval_lengths"):
        cfg_of("train.eval_lengths=[4]")  # lag 5 does not fit in 4 positions


def test_compiled_training_gives_the_eager_numbers():
    """train(compile=True) goes through torch.compile and lands where eager training lands."""
    cfg = cfg_of("train.steps=30", "model.attention=dp")
    eager = sm.train(cfg, progress=False)
    compiled = sm.train(cfg, progress=False, compile=True)
    assert compiled["compiled"] is True and "compiled" not in eager
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-3)


def test_a_failing_compiler_falls_back_to_eager(monkeypatch):
    def broken(model):
        def call(x):
            raise RuntimeError("no compiler here")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    cfg = cfg_of("train.steps=10")
    got = sm.train(cfg, progress=False, compile=True)
    ref = sm.train(cfg, progress=False)
    assert got["compiled"] is False and got["status"] == "done"
    assert got["val_loss"] == ref["val_loss"]


def test_micro_batches_accumulate_to_the_whole_batch(tmp_path):
    """train.micro_batch: gradient accumulation over micro-batches gives the whole batch's update (float32
    round-off), so a run's metrics match within 1e-5 over 20 steps."""
    base = ["train.steps=20", "train.eval_every=1", "train.batch_size=8"]
    sm.train(cfg_of(*base), out_dir=tmp_path / "w", progress=False)
    sm.train(cfg_of(*base, "train.micro_batch=2"), out_dir=tmp_path / "p", progress=False)
    a = [json.loads(r) for r in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(r) for r in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 20
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)
    with pytest.raises(sm.ConfigError, match="train.micro_batch = 3: must divide train.batch_size = 8"):
        cfg_of("train.batch_size=8", "train.micro_batch=3")


def test_bf16_autocast_trains_close_to_float32(tmp_path):
    base = ["train.steps=60", "train.lr=0.01"]
    full = sm.train(cfg_of(*base), progress=False)
    half = sm.train(cfg_of(*base, "train.autocast=bf16"), progress=False)
    assert half["status"] == "done" and half["val_loss"] < full["val_loss"] * 1.2 + 0.05
    assert half["val_loss"] != full["val_loss"]  # the forward really ran in bfloat16
    assert sm.RunConfig.from_dict({}, [*SMALL, "train.autocast=bf16"]).config_hash() != cfg_of().config_hash()
