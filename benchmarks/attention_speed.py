"""One attention layer's forward + backward through each kernel, side by side; prints one JSON object.

The core only (q, k, v in, heads out; no projections): causal softmax attention with a trainable lin
RPE, a trainable log RPE and fixed ALiBi slopes through each kernel asked for (--kernels: chunked,
sdpa, triton; model.attention_kernel), beside two floors that train no RPE:
scaled_dot_product_attention with is_causal and no bias (flash where the device has it), and with the
lin bias as a frozen float mask. Each row gives milliseconds per forward + backward (the median of
--repeats timed calls after warm-up) and, for the RPE rows, the gradient of p is part of the work.

Shapes: gpt2-small (batch 8, H = 12, T = 1024, head size 64: the shape of the paper-scale issue's
measurements) on a GPU, in bf16; small (batch 2, H = 4, T = 256, head size 32) on a CPU, in float32.

    python benchmarks/attention_speed.py [--device cpu|cuda] [--shape small|gpt2-small]
                                         [--dtype float32|bfloat16] [--kernels K,K] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import sparsemem as sm
from sparsemem.models.attention import Attention
from sparsemem.models.fused import lin_bias_mask

SHAPE = {
    "gpt2-small": {"batch": 8, "heads": 12, "seq_len": 1024, "head_size": 64},
    "small": {"batch": 2, "heads": 4, "seq_len": 256, "head_size": 32},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_call(fn, leaves, device, repeats: int) -> float:
    """Median milliseconds of fn's forward + backward (gradients of the leaves, the RPE's included)."""

    def call():
        out = fn()
        out.backward(torch.ones_like(out))
        for t in leaves:
            t.grad = None

    call()  # warm-up: compilation, autotuning, allocator
    call()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--shape", choices=sorted(SHAPE), default=None, help="default: gpt2-small on a GPU, else small")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: bf16 on a GPU")
    parser.add_argument(
        "--kernels",
        default=None,
        help="comma-separated (default: sdpa,triton on a GPU, chunked,sdpa on a CPU, where triton runs interpreted)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (default 10)")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    shape = SHAPE[args.shape or ("gpt2-small" if gpu else "small")]
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    kernels = (args.kernels or ("sdpa,triton" if gpu else "chunked,sdpa")).split(",")
    B, H, T, hd = shape["batch"], shape["heads"], shape["seq_len"], shape["head_size"]
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(B, H, T, hd, device=device, dtype=dtype, generator=gen).requires_grad_() for _ in "qkv")
    out = {
        "benchmark": "attention_speed",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if gpu else platform.machine(),
        "threads": torch.get_num_threads(),
        "shape": shape,
        "dtype": str(dtype).removeprefix("torch."),
        "kernels": kernels,
        "rows": [],
    }

    def add(label, fn, leaves, **extra):
        row = {"attention": label, **extra, "ms": round(ms_per_call(fn, leaves, device, args.repeats), 3)}
        out["rows"].append(row)
        print(json.dumps(row), file=sys.stderr)

    add("sdpa, causal, no bias", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v))
    p0 = 2.0 ** (-8.0 * torch.arange(H, device=device) / H)
    frozen = lin_bias_mask(p0, T).to(dtype)[None]
    add("sdpa, lin bias frozen", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=frozen), (q, k, v))
    for kernel in kernels:
        for rpe in ("lin", "log", "alibi"):
            cfg = sm.ModelConfig(dim=H * hd, heads=H, rpe=rpe, scale=True, attention_kernel=kernel)
            attn = Attention(cfg).to(device)
            leaves = (q, k, v, *attn.rpe.parameters())
            add(f"{kernel}, {rpe}", lambda: attn.softmax_qkv(q, k, v, kernel), leaves, kernel=kernel, rpe=rpe)
    floor = out["rows"][0]["ms"]
    for row in out["rows"]:
        row["vs_no_bias"] = round(row["ms"] / floor, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
