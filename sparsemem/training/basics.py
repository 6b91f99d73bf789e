"""What a single run and a fleet share: the device, the result, the schedule, the evaluation, divergence."""

from __future__ import annotations

import math
import os
import sys
from typing import Optional

import torch

from ..config import RunConfig
from ..models import is_memory_parameter
from ..preflight import check_device, concrete_device
from ..tasks import make_task

DATA_SEED_OFFSET = 104_729  # the training stream of seed s is seeded with s + this
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """The torch device a run trains on: ``auto`` is cuda where present, else cpu; others are checked."""
    name = concrete_device(name)
    check_device(name)
    return torch.device(name)


class RunResult(dict):
    """A run's result: its metrics as a plain dict (what the store and final.json keep), and the trained
    model beside it as ``.model``, never one of its items. ``result["model"]`` still answers, for code
    written when the model was an item."""

    def __init__(self, data: dict, model=None):
        super().__init__(data)
        self.model = model

    def __missing__(self, key):
        if key == "model" and self.model is not None:
            return self.model
        raise KeyError(key)


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A CPU training step allocates and frees tensors of tens of MB each time. By
    default glibc maps such blocks fresh and unmaps them on free, so every step
    pays the kernel for zeroing their pages again: measured on this 2-core machine,
    the 3a DP cell H = 64, m = 256 took 48 ms a step that way and 20 ms with the
    memory kept. Process-wide and idempotent; the process's resident memory stays
    at its peak. Set SPARSEMEM_MALLOC=system to leave malloc alone. Returns
    whether the settings took (glibc only).
    """
    global _ALLOCATOR_TUNED
    if (
        _ALLOCATOR_TUNED
        or os.environ.get("SPARSEMEM_MALLOC", "keep") == "system"
        or not sys.platform.startswith("linux")
    ):
        return _ALLOCATOR_TUNED
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        # blocks up to 1 GiB from the heap (older glibc caps this at 32 MiB); trim only above 2 GiB free
        mapped = libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20)
        _ALLOCATOR_TUNED = bool(mapped and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass
    return _ALLOCATOR_TUNED


def lr_factor(step: int, cfg) -> float:
    """Multiplier of lr after `step` optimizer steps: linear warm-up, then constant or cosine."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def param_groups(model: torch.nn.Module, tc) -> list:
    """Three groups: weight matrices (decayed), other weights, memory parameters (lr * rpe_lr_scale, no decay)."""
    decay, rest, rpe = [], [], []
    for name, p in model.named_parameters():
        if is_memory_parameter(name):
            rpe.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            rest.append(p)
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": rest, "weight_decay": 0.0},
        {"params": rpe, "weight_decay": 0.0, "lr": tc.lr * tc.rpe_lr_scale},
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def mean_loss(predict, loss, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """loss(predict(x), y) averaged over a fixed set, evaluated in chunks, in float64."""
    total, n = 0.0, 0
    for i in range(0, x.shape[0], chunk):
        part = y[i : i + chunk]
        total = total + loss(predict(x[i : i + chunk]), part).double() * part.shape[0]
        n += part.shape[0]
    return total / n


def evaluate(model, task, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> float:
    """The task's loss (MSE, or cross-entropy for text) over a fixed set, in chunks."""
    return mean_loss(model, task.loss, x, y, chunk).item()


def evaluate_lengths(cfg: RunConfig, model, device, dtype) -> dict:
    """The trained model on the same task at other sequence lengths: {length: {val_loss, val_rel}}."""
    out = {}
    model.eval()
    for n in cfg.train.eval_lengths:
        task = make_task(cfg.task.model_copy(update={"seq_len": n}))
        x, y = task.validation_set(cfg.train.val_samples, device=device, dtype=dtype)
        loss = evaluate(model, task, x, y)
        var = task.variance(y)
        out[str(n)] = {"val_loss": loss, "val_rel": loss / var if var else None}
    return out


def blowup_limit(tc, var_y) -> float:
    """The loss above which a run counts as diverged: train.blowup x Var(y) (inf when off or Var(y) unknown)."""
    return tc.blowup * var_y if tc.blowup and var_y else math.inf


def diverges(loss: float, limit: float) -> bool:
    return not math.isfinite(loss) or loss > limit


def json_number(v: float):
    """A float JSON can hold: NaN and inf become the strings "nan", "inf", "-inf"."""
    return v if math.isfinite(v) else str(v)


def fleet_engine(hashes: list[str], member: int) -> dict:
    """How a fleet member was trained, for its result: the fleet's size and its members' config hashes in
    order (a member's numbers depend on the fleet it shared, by about 1e-6 to 1e-5 relative; see
    docs/fleets.md), so that ``sparsemem retrain`` can train it exactly again."""
    return {"engine": "fleet", "fleet_size": len(hashes), "fleet_members": list(hashes), "fleet_member": member}


def new_result(
    cfg: RunConfig, chash: str, var_y, params: int, device, steps: int = 0, history: Optional[list] = None
) -> dict:
    """A run's result before it finishes; ``history`` holds its metrics rows so far, if any.

    ``curve`` is the validation curve, one [step, val_rel] a evaluation (val_loss where val_rel is None),
    kept in the store so a report can tell how fast a run learned, not only where it ended.
    """
    history = history or []
    last = history[-1] if history else {}
    return {
        "name": cfg.name,
        "config_hash": chash,
        "status": "running",
        "steps": steps,
        "val_loss": last.get("val_loss"),
        "val_rel": last.get("val_rel"),
        "train_loss": last.get("train_loss"),
        "var_y": var_y,
        "params": params,
        "seconds": 0.0,
        "diverged_step": None,
        "device": str(device),
        "curve": [curve_point(r) for r in history],
    }


def curve_point(row: dict) -> list:
    """One evaluation on a run's validation curve: [step, val_rel] (val_loss for runs without Var(y))."""
    v = row["val_rel"] if row.get("val_rel") is not None else row["val_loss"]
    return [row["step"], json_number(float(v))]


def progress_bar(enabled: bool, total: int, start: int, label: str):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        transient=True,
        console=None,
    )
    bar.start()
    bar.add_task(label, total=total, completed=start, info="")
    return bar
