"""Language-model training speed side by side; prints one JSON object.

At one shape and batch: sparsemem's LanguageModel with a trainable lin RPE, a
trainable log RPE and fixed ALiBi slopes, each through every attention kernel
asked for (--kernels: chunked, sdpa, triton; model.attention_kernel), against
lucidrains' x-transformers
(TransformerWrapper, Decoder with alibi_pos_bias and attn_flash; `pip install
x-transformers`). Each row gives tokens per second, model TFLOP/s (6 N + 12 L
A T per token, sparsemem/throughput.py) and MFU where the device's peak is
known (bf16 autocast on a known GPU, or SPARSEMEM_PEAK_TFLOPS), and the ratio
to x-transformers.

With --project, the paper profile of 1a_text and 3b_text (nine models, 10,000
iterations of 96 x 1024 tokens each) is projected through the kernel whose
trainable-lin row was fastest: every model of the profile
is built at its own shape and timed for --seconds at --batch sequences a step
(gradients accumulate to the profile's batch in the real runs, the same work per
token), and its run time is its tokens over its measured tokens per second.
Evaluation and start-up are left out.

Shapes: gpt2-small (L = 12, D = 768, H = 12, T = 1024, GPT-2's 50,257 tokens)
and tiny (L = 2, D = 128, H = 4, T = 256, bytes), for a CPU.

    python benchmarks/lm_speed.py [--device cpu|cuda] [--shape tiny|gpt2-small] [--batch B]
                                  [--autocast off|bf16] [--compile] [--seconds S] [--project]
                                  [--kernels K,K]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time

import torch
import torch.nn.functional as F

import sparsemem as sm
from sparsemem.experiments.text import lm_model, specs_1a, specs_3b
from sparsemem.throughput import flops_per_token, peak_flops

SHAPE = {
    "gpt2-small": {"layers": 12, "dim": 768, "heads": 12, "seq_len": 1024, "vocab": 50257},
    "tiny": {"layers": 2, "dim": 128, "heads": 4, "seq_len": 256, "vocab": 256},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_s(model, vocab: int, T: int, batch: int, device, autocast: str, compile: bool, seconds: float) -> float:
    """Training tokens per second: AdamW (fused on a GPU), next-token cross-entropy on random tokens."""
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    run = torch.compile(model) if compile else model
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if autocast == "bf16" else contextlib.nullcontext()
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        x = torch.randint(0, vocab, (batch, T + 1), generator=gen, device=device)
        with amp:
            logits = run(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3 if compile else 1):  # warm-up (and compilation)
        step()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    sync(device)
    return n * batch * T / (time.perf_counter() - t0)


def ours(shape: dict, rpe: str, kernel: str) -> torch.nn.Module:
    D, H = shape["dim"], shape["heads"]
    kw = dict(layers=shape["layers"], dim=D, heads=H, head_dim=D // H, ffn_width=4 * D, rpe=rpe)
    cfg = sm.ModelConfig(**lm_model("paper", **kw), attention_kernel=kernel)
    torch.manual_seed(0)
    return sm.models.LanguageModel(cfg, vocab=shape["vocab"])


def x_transformers(shape: dict):
    from x_transformers import Decoder, TransformerWrapper

    torch.manual_seed(0)
    return TransformerWrapper(
        num_tokens=shape["vocab"],
        max_seq_len=shape["seq_len"],
        use_abs_pos_emb=False,
        attn_layers=Decoder(
            dim=shape["dim"],
            depth=shape["layers"],
            heads=shape["heads"],
            attn_dim_head=shape["dim"] // shape["heads"],
            alibi_pos_bias=True,
            attn_flash=True,
        ),
    )


def row(label, model, shape, args, device, peak) -> dict:
    n = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(n, shape["layers"], shape["dim"], shape["seq_len"])
    tps = tokens_per_s(
        model, shape["vocab"], shape["seq_len"], args.batch, device, args.autocast, args.compile, args.seconds
    )
    tps = round(tps) or tps  # the FLOP rates below agree with the tokens/s printed (a slow CPU's few hundred)
    out = {"model": label, "params": n, "tokens_per_s": round(tps), "model_tflops": float(f"{fpt * tps / 1e12:.4g}")}
    if peak:
        out["mfu"] = float(f"{fpt * tps / peak:.4g}")
    print(json.dumps(out), file=sys.stderr)
    return out


def project(args, device, kernel: str) -> dict:
    """The paper profile of 1a_text and 3b_text from each model's measured tokens per second."""
    runs = [c for s in specs_1a("paper", "/corpus") + specs_3b("paper", "/corpus") for c in s.expand()]
    vocab = SHAPE["gpt2-small"]["vocab"]
    rows, total = [], 0.0
    for cfg in runs:
        torch.manual_seed(0)
        model = sm.models.LanguageModel(cfg.model.model_copy(update={"attention_kernel": kernel}), vocab=vocab)
        T = cfg.task.seq_len
        tps = tokens_per_s(model, vocab, T, args.batch, device, args.autocast, args.compile, args.seconds)
        tokens = cfg.train.steps * cfg.train.batch_size * T
        rows.append({"run": cfg.name, "tokens": tokens, "tokens_per_s": round(tps), "projected_s": round(tokens / tps)})
        total += tokens / tps
        print(json.dumps(rows[-1]), file=sys.stderr)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "attention_kernel": kernel,
        "method": "each model timed at its own shape for --seconds at --batch sequences a step; its run time is "
        "its 10,000 x 96 x 1024 tokens over that rate; evaluation and start-up left out",
        "runs": rows,
        "projected_hours": round(total / 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--shape", choices=sorted(SHAPE), default=None, help="default: gpt2-small on a GPU, else tiny")
    parser.add_argument("--batch", type=int, default=8, help="sequences a step (default 8)")
    parser.add_argument("--autocast", choices=("off", "bf16"), default="off")
    parser.add_argument("--compile", action="store_true", help="train through torch.compile")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per model, after warm-up")
    parser.add_argument("--project", action="store_true", help="project the paper profile of 1a_text and 3b_text")
    parser.add_argument(
        "--kernels",
        default=None,
        help="attention kernels for our models, comma-separated (default: sdpa,triton on a GPU, chunked on a CPU, "
        "where triton would run interpreted)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    shape = SHAPE[args.shape or ("gpt2-small" if device.type == "cuda" else "tiny")]
    peak = peak_flops(device, args.autocast)
    out = {
        "benchmark": "lm_speed",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "threads": torch.get_num_threads(),
        "shape": shape,
        "batch": args.batch,
        "autocast": args.autocast,
        "compile": args.compile,
        "peak_tflops": peak / 1e12 if peak else None,
        "models": [],
    }
    kernels = (args.kernels or ("sdpa,triton" if device.type == "cuda" else "chunked")).split(",")
    out["kernels"] = kernels
    for kernel in kernels:
        for label, rpe in (("lin (trainable)", "lin"), ("log (trainable)", "log"), ("alibi", "alibi")):
            r = row(f"sparsemem {label}, {kernel}", ours(shape, rpe, kernel), shape, args, device, peak)
            out["models"].append({**r, "rpe": rpe, "attention_kernel": kernel})
    try:
        out["models"].append(row("x-transformers alibi + flash", x_transformers(shape), shape, args, device, peak))
    except ImportError:
        out["models"].append({"model": "x-transformers", "note": "not installed: pip install x-transformers"})
    ref = out["models"][-1].get("tokens_per_s")
    for r in out["models"][:-1]:
        if ref:
            r["vs_x_transformers"] = round(r["tokens_per_s"] / ref, 3)
    if args.project:
        lin = [r for r in out["models"] if r.get("rpe") == "lin"]
        fastest = max(lin, key=lambda r: r["tokens_per_s"])["attention_kernel"]
        out["paper_profile_1a_3b"] = project(args, device, fastest)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
