"""Training steps per second of the fast paths next to plain baselines; prints JSON.

Two settings (issue 2):
  exp1b_last: the paper's experiment-1b model: 1 layer, DP-free, lin RPE,
              H = 32, m = 256, D = 64, T = 1000, batch 100, last-position output.
  dp_all:     all-position output, L = 2, H = 8, D = 64, T = 1024, batch 16,
              DP attention with a trainable log RPE.
Each is timed with impl=fast (what `sparsemem train` runs), with the explicit
reference (every (t, s) logit, a (B, H, T, T) tensor), and with
scaled_dot_product_attention over all positions with a fixed (frozen) RPE bias.
A baseline that would not fit in memory at the full batch is timed at a smaller
batch; its `batch` field says which, and steps_per_s is scaled to the full batch.

On a GPU (--device cuda) every variant starts at the full batch and halves it
on running out of memory.

    python benchmarks/train_speed.py [--seconds S] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import sparsemem as sm
from sparsemem.models.attention import Attention

SETTINGS = {
    "exp1b_last": dict(
        task=[
            "task.kind=fixed",
            "task.seq_len=1000",
            "task.lags=[952,944,901]",
            "task.readout=relu_net",
            "task.output=last",
        ],
        model=[
            "model.layers=1",
            "model.heads=32",
            "model.dim=64",
            "model.ffn_width=256",
            "model.rpe=lin",
            "model.attention=dp_free",
        ],
        batch=100,
    ),
    "dp_all": dict(
        task=["task.kind=fixed", "task.seq_len=1024", "task.lags=[1,100,1000]", "task.output=all"],
        model=[
            "model.layers=2",
            "model.heads=8",
            "model.dim=64",
            "model.ffn_width=64",
            "model.rpe=log",
            "model.attention=dp",
        ],
        batch=16,
    ),
}


def sdpa_all_positions(self, x, last_only=False):
    """Softmax attention over all positions through SDPA with the RPE as a float mask."""
    out = self._sdpa_any(x)
    return out[:, -1:] if last_only else out


def _sdpa_any(self, x):
    # dp_free heads have no W_Q, W_K: zero queries and keys leave the RPE alone in the logits
    v = self._split(self.v(x))
    q, k = (self._split(self.q(x)), self._split(self.k(x))) if self.kind == "dp" else (torch.zeros_like(v),) * 2
    return self._merge(self._sdpa(q, k, v))


def time_steps(cfg, variant: str, batch: int, seconds: float, device: str = "cpu") -> dict:
    task = sm.make_task(cfg.task)
    torch.manual_seed(0)
    impl = "reference" if variant == "explicit" else "fast"
    model = sm.make_model(cfg.model.model_copy(update={"impl": impl}), task).to(device)
    if variant == "sdpa_fixed_bias":
        model._time_first = lambda: False  # every layer through its attention module
        for attn in model.attn:
            attn.rpe.requires_grad_(False)
            attn._sdpa_any = _sdpa_any.__get__(attn, Attention)
            attn.forward = sdpa_all_positions.__get__(attn, Attention)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        x, y = task.sample(batch, gen)
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    sync()
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if n % 10 == 0:
            sync()
    sync()
    dt = (time.perf_counter() - t0) / n
    return {"seconds_per_step": round(dt, 5), "steps_timed": n, "batch": batch, "samples_per_s": round(batch / dt, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name, spec in SETTINGS.items():
        cfg = sm.RunConfig.from_dict({}, spec["task"] + spec["model"])
        full = spec["batch"]
        for variant in ("fast", "explicit", "sdpa_fixed_bias"):
            # the explicit (B, H, T, T) logits of exp1b at batch 100 need ~13 GB per tensor
            gpu = args.device.startswith("cuda")
            batch = full if (variant == "fast" or name == "dp_all" or gpu) else 4
            while True:
                try:
                    r = time_steps(cfg, variant, batch, args.seconds, args.device)
                    break
                except torch.cuda.OutOfMemoryError:
                    if batch == 1:
                        raise
                    batch //= 2
                    torch.cuda.empty_cache()
            r["steps_per_s"] = round(r["samples_per_s"] / full, 3)
            results.append({"setting": name, "variant": variant, **r})
    print(
        json.dumps(
            {
                "benchmark": "train_speed",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
                "note": "steps_per_s is at the setting's full batch (samples_per_s / full batch)",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
