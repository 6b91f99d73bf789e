"""The CUDA paths: every model combination on the GPU against the CPU and against its reference,
training and a sweep with train.device=cuda. Skipped where torch sees no GPU (CI has none)."""

import json

import pytest
import torch
from conftest import MODEL_COMBOS, outputs_and_grads, triton_pair

import sparsemem as sm
from sparsemem import ModelConfig, make_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def build(rpe, att, norm, output, impl, dtype, **kw):
    opts = dict(
        layers=2,
        heads=2,
        dim=8,
        ffn_width=6,
        rpe=rpe,
        attention=att,
        normalize=norm,
        rpe_buckets=3,
        rpe_max_distance=7,
        impl=impl,
    )
    opts.update(kw)
    torch.manual_seed(0)
    return make_model(ModelConfig(**opts), input_dim=2, output=output).to(dtype)


def close(a, b, tol):
    scale = max(1.0, b.abs().max().item())
    return (a.cpu() - b.cpu()).abs().max().item() <= tol * scale


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("rpe,att,norm", MODEL_COMBOS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_gpu_matches_cpu_and_reference(rpe, att, norm, output, dtype, tol):
    cpu = build(rpe, att, norm, output, "fast", dtype)
    gpu_fast = build(rpe, att, norm, output, "fast", dtype).cuda()
    gpu_ref = build(rpe, att, norm, output, "reference", dtype).cuda()
    gpu_ref.load_state_dict(gpu_fast.state_dict())
    x = torch.rand(3, 40, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) - 0.5
    want = cpu(x)
    got = gpu_fast(x.cuda())
    assert got.device.type == "cuda" and torch.isfinite(got).all()
    assert close(got, want, tol), (got.cpu() - want).abs().max().item()
    assert close(got, gpu_ref(x.cuda()), tol)


@pytest.mark.parametrize("rpe,att,norm", [c for c in MODEL_COMBOS if c[0] in ("lin", "log", "learned")])
def test_gpu_gradients_match_cpu(rpe, att, norm):
    cpu = build(rpe, att, norm, "all", "fast", torch.float64)
    gpu = build(rpe, att, norm, "all", "fast", torch.float64).cuda()
    x = torch.rand(2, 24, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 0.5
    cpu(x).square().sum().backward()
    gpu(x.cuda()).square().sum().backward()
    for (name, a), b in zip(cpu.named_parameters(), gpu.parameters()):
        if a.grad is None:
            assert b.grad is None or b.grad.abs().max() == 0, name
            continue
        assert close(b.grad, a.grad, 1e-8), name


def test_training_on_cuda_learns_and_is_reproducible(tmp_path):
    overrides = [
        "task.kind=kernel",
        "task.kernels=[exp:0.5]",
        "task.seq_len=128",
        "task.output=last",
        "model.heads=1",
        "model.dim=4",
        "model.ffn_width=0",
        "model.attention=dp_free",
        "model.rpe=lin",
        "train.steps=300",
        "train.lr=1e-2",
        "train.device=cuda",
        "train.eval_every=100",
    ]
    cfg = sm.RunConfig.from_dict({}, overrides)
    a = sm.train(cfg, out_dir=tmp_path / "a", progress=False)
    b = sm.train(cfg, out_dir=tmp_path / "b", progress=False)
    assert a["status"] == "done" and a["val_rel"] < 1e-3
    assert a["val_loss"] == b["val_loss"]  # the same seed on the same device gives the same numbers
    assert json.loads((tmp_path / "a" / "final.json").read_text())["device"].startswith("cuda")


def test_sweep_on_cuda(tmp_path):
    from sparsemem.sweep.runner import run_sweep
    from sparsemem.sweep.spec import SweepSpec
    from sparsemem.sweep.store import Store

    spec = SweepSpec(
        name="gpu",
        base={
            "task": {"kind": "kernel", "kernels": ["power:1.5"], "seq_len": 64, "output": "last"},
            "model": {"heads": 1, "dim": 4, "ffn_width": 0, "attention": "dp_free"},
            "train": {"steps": 50, "device": "cuda"},
        },
        grid={"model.rpe": ["lin", "log"]},
        seeds=[0],
        cases=[{}],
    )
    runs = spec.expand()
    with Store(tmp_path / "r.db") as store:
        store.add("gpu", [(c.config_hash(), c.name, c.to_dict()) for c in runs])
        run_sweep(runs, store, None, workers=2, backend="local", runs_dir=tmp_path / "runs", progress=False)
        rows = store.rows(sweep="gpu")
    assert [r["status"] for r in rows] == ["done", "done"]


@pytest.mark.parametrize("rpe,att,norm", MODEL_COMBOS)
def test_fleet_on_cuda_matches_its_single_runs(rpe, att, norm, tmp_path):
    """A fleet on the GPU (data sampled there) against the same runs trained alone on the GPU."""
    from sparsemem.training import train_fleet

    base = [
        "task.kind=fixed",
        "task.lags=[2,5]",
        "task.seq_len=16",
        "model.dim=8",
        "model.ffn_width=8",
        f"model.rpe={rpe}",
        f"model.attention={att}",
        f"model.normalize={str(norm).lower()}",
        "model.rpe_buckets=3",
        "model.rpe_max_distance=9",
        "model.head_dim=2",
        "train.device=cuda",
        "train.steps=100",
        "train.batch_size=8",
        "train.val_samples=64",
        "train.eval_every=50",
    ]
    cfgs = [
        sm.RunConfig.from_dict({}, base + ["model.heads=2", "train.seed=0"]),
        sm.RunConfig.from_dict({}, base + ["model.heads=4", "model.ffn_width=16", "train.seed=1"]),
    ]
    fleet = train_fleet(cfgs, progress=False)
    for cfg, got in zip(cfgs, fleet):
        ref = sm.train(cfg, progress=False)
        assert got["status"] == ref["status"]
        if got["status"] == "done" and not (got["val_rel"] < 1e-8 and ref["val_rel"] < 1e-8):
            assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=0.01)


@pytest.mark.parametrize(
    "rpe,sign",
    [("lin", "positive"), ("lin", "free"), ("log", "positive"), ("t5", "positive"), ("kerple_log", "positive")],
)
@pytest.mark.parametrize("T", [5, 64, 200])
def test_triton_attention_compiled_matches_the_reference(rpe, sign, T):
    """The compiled kernel in float32 (IEEE products) within 1e-5 of the reference, gradients of p included."""
    pytest.importorskip("triton")
    ref, fused = triton_pair(rpe, sign, dim=128, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(T)
    x = torch.randn(3, T, 128, device="cuda", generator=gen)
    w = torch.randn(3, T, 128, device="cuda", generator=gen)
    out, grads = outputs_and_grads(fused, x, w)
    want, want_grads = outputs_and_grads(ref, x, w)
    assert close(out, want, 1e-5)
    for (name, _), g, r in zip([("x", None), *ref.named_parameters()], grads, want_grads):
        assert close(g, r, 1e-5), name


@pytest.mark.parametrize("rpe", ["lin", "log"])
def test_triton_attention_in_bf16_autocast(rpe):
    """Under bf16 autocast the kernel stays within bf16's round-off of the float32 reference (the
    interpreter has no bf16 matmul, so this is checked here only)."""
    pytest.importorskip("triton")
    ref, fused = triton_pair(rpe, dim=768, heads=12, scale=True, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(2, 1024, 768, device="cuda", generator=gen)
    w = torch.randn(2, 1024, 768, device="cuda", generator=gen)
    out, grads = outputs_and_grads(fused, x, w, autocast=True)
    want, want_grads = outputs_and_grads(ref, x, w)
    assert close(out, want, 3e-2)
    for (name, _), g, r in zip([("x", None), *ref.named_parameters()], grads, want_grads):
        assert (g - r).norm() <= 3e-2 * r.norm(), name
