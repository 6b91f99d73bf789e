"""The fused Triton attention (models/flash.py) against the reference attention: outputs and the gradients
of every parameter, the RPE's per-head ones included. Without a GPU the kernels run through Triton's
interpreter (conftest.py chooses it); on a GPU tests/test_cuda.py runs them compiled."""

import subprocess
import sys

import pytest
import torch
from conftest import close, outputs_and_grads, triton_pair

import sparsemem as sm
from sparsemem import ModelConfig
from sparsemem.config import ConfigError
from sparsemem.models.attention import Attention

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter runs here only without a GPU")

SIGNED = [("lin", "positive"), ("lin", "free"), ("log", "positive"), ("log", "free")]
RPES = SIGNED + [("t5", "positive"), ("kerple_log", "positive"), ("alibi", "positive"), ("none", "positive")]


@pytest.mark.parametrize("rpe,sign", RPES)
@pytest.mark.parametrize("T", [1, 9, 16, 37])
def test_triton_attention_matches_the_reference(rpe, sign, T):
    """float32 within 1e-5 (relative to the largest entry where it exceeds 1): the output and the gradients
    of the input, W_Q, W_K, W_V, W_O and the RPE's p (and kerple's a); sequences shorter than one tile,
    exactly one, and several with the last cut short; a log-type head's row 0 (no admissible key) is 0."""
    ref, fused = triton_pair(rpe, sign)
    assert fused.softmax_kernel("cpu") == "triton"
    gen = torch.Generator().manual_seed(T)
    x = torch.randn(2, T, 16, generator=gen)
    w = torch.randn(2, T, 16, generator=gen)
    out, grads = outputs_and_grads(fused, x, w)
    want, want_grads = outputs_and_grads(ref, x, w)
    assert close(out, want, 1e-5), (out - want).abs().max().item()
    for name, g, r in zip(["x"] + [n for n, _ in ref.named_parameters()], grads, want_grads):
        assert close(g, r, 1e-5), (name, (g - r).abs().max().item())
    rpe_grads = grads[1 + len(list(ref.parameters())) - len(list(ref.rpe.parameters())) :]
    if T > 1:
        assert all(g.abs().sum() > 0 for g in rpe_grads)  # the trainable RPE does learn


@pytest.mark.parametrize("head_dim,heads,scale", [(1, 3, False), (20, 2, True), (64, 1, True)])
def test_triton_attention_head_sizes(head_dim, heads, scale):
    """Head sizes below, between and at the tile's power of two; 1/sqrt(d_k) on or off."""
    ref, fused = triton_pair("log", dim=heads * head_dim, heads=heads, scale=scale)
    gen = torch.Generator().manual_seed(head_dim)
    x = torch.randn(3, 21, heads * head_dim, generator=gen)
    w = torch.randn(3, 21, heads * head_dim, generator=gen)
    out, grads = outputs_and_grads(fused, x, w)
    want, want_grads = outputs_and_grads(ref, x, w)
    assert close(out, want, 1e-5)
    for g, r in zip(grads, want_grads):
        assert close(g, r, 1e-5)


def test_triton_attention_in_half_precision_and_without_grad():
    """float16 inputs (the interpreter has no bfloat16 matmul; tests/test_cuda.py checks bf16) within half
    precision's round-off, and a forward under no_grad equal to the one that keeps the graph."""
    ref, fused = triton_pair("lin", dim=32, heads=4)
    x = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = ref(x)
        plain = fused(x)
        half = fused.half()(x.half())
    assert half.dtype == torch.float16
    assert close(half.float(), want, 3e-3)
    assert close(plain, want, 1e-5)


def test_triton_kernel_trains_a_language_model_like_the_chunked_one(tmp_path):
    """A byte LM with a trainable log RPE: 6 steps through the Triton kernel give the losses of the CPU's
    chunked kernel (float32, 1e-5), p included in what trains."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(" ".join(f"word{i % 37} and {i % 11}" for i in range(2000)))
    losses = {}
    for kernel in ("chunked", "triton"):
        cfg = sm.RunConfig.from_dict(
            {},
            [
                f"task.corpus={corpus}",
                "task.kind=text",
                "task.seq_len=24",
                "task.output=all",
                "model.layers=2",
                "model.dim=16",
                "model.heads=2",
                "model.ffn_width=32",
                "model.rpe=log",
                f"model.attention_kernel={kernel}",
                "train.steps=6",
                "train.eval_every=1",
                "train.batch_size=4",
                "train.lr=0.01",
                "train.val_samples=8",
            ],
        )
        result = sm.train(cfg, out_dir=tmp_path / kernel, progress=False)
        assert result["status"] == "done"
        losses[kernel] = [loss for _, loss in result["curve"]]
    assert len(losses["triton"]) == 6
    assert torch.allclose(torch.tensor(losses["triton"]), torch.tensor(losses["chunked"]), rtol=1e-5, atol=0)


def test_triton_kernel_refuses_a_per_lag_rpe_and_a_missing_package(monkeypatch):
    with pytest.raises(ConfigError, match="model.attention_kernel.*per lag"):
        sm.RunConfig.from_dict({}, ["model.rpe=learned", "model.attention_kernel=triton"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    with pytest.raises(ConfigError, match="needs triton"):
        Attention(ModelConfig(attention_kernel="triton"))


def test_triton_kernel_bad_config_is_one_line_exit_2(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "sparsemem", "train", "model.rpe=learned", "model.attention_kernel=triton"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "model.attention_kernel" in run.stderr
    assert not any(tmp_path.iterdir())


def test_triton_kernel_under_torch_compile(tmp_path, monkeypatch):
    """torch.compile of a model with the Triton kernel leaves the kernel out of its graphs and gives the
    eager numbers, gradients of p included."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    ref, fused = triton_pair("log", dim=8, heads=2)
    x = torch.randn(2, 19, 8, generator=torch.Generator().manual_seed(5))
    w = torch.randn(2, 19, 8, generator=torch.Generator().manual_seed(6))
    out, grads = outputs_and_grads(torch.compile(fused), x, w)
    want, want_grads = outputs_and_grads(ref, x, w)
    assert close(out, want, 1e-5)
    for g, r in zip(grads, want_grads):
        assert close(g, r, 1e-5)
