"""Checks that a run can go ahead on this machine, made before anything is built or written.

The config schemas say what is valid anywhere; these checks say what this
machine can do: the device exists, the run's memory fits, and the folders it
will write can be made. Each failure is a ConfigError (exit code 2) whose one
line names the field or path, the value and what is allowed.

Memory: ``estimate_bytes`` is an upper-end estimate of a run's peak memory from
its config alone (parameters with their AdamW state, the validation set, the
activations one training step keeps for backward and those of one evaluation
chunk). A run whose estimate exceeds the limit is refused. The limit is the
device's memory (physical RAM on a CPU); SPARSEMEM_MEMORY_LIMIT overrides it
("64G", "512M", a number of bytes, or "off").
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from .config import ConfigError, RunConfig

EVAL_CHUNK = 500  # rows per evaluation forward (train.evaluate)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def check_device(name: str, field: str = "train.device") -> None:
    """The device named exists here."""
    import torch

    if name in ("cpu", "auto"):
        return
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{field} = {name!r}: CUDA is not available here; use cpu or auto")
        index = int(name[5:]) if name.startswith("cuda:") else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{field} = {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    elif name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{field} = 'mps': Apple's MPS is not available here; use cpu or auto")


def estimate_bytes(cfg: RunConfig) -> int:
    """An upper-end estimate of a run's peak memory, from its config alone."""
    t, m, tr = cfg.task, cfg.model, cfg.train
    size = 8 if tr.dtype == "float64" else 4
    T, d = t.seq_len, (256 if t.kind == "text" else t.dim)
    every_row = t.output == "all" or m.layers > 1 or t.kind == "text"
    rows = T if every_row else 1
    if m.arch == "transformer":
        D, H, hd, L, W = m.dim, m.heads, m.head_size, m.layers, m.ffn_width
        params = d * D + 2 * D + L * (4 * D * H * hd + 2 * D * W + 2 * W + H * (m.rpe_max_distance + 2))
        per_sample = L * rows * (6 * D + 3 * W + 3 * H * hd)
        if m.attention == "dp" and every_row:
            per_sample += L * 3 * H * T * T  # logits and weights of every query row
        else:
            per_sample += L * H * T * (d + 4)  # one row of weights per head, or an FFT convolution
        if m.attention != "dp" and every_row:
            per_sample += L * 8 * T * H * hd  # the FFT convolution: twice the length, complex float64
    else:
        N = m.hidden
        params = 4 * (N * N + N * d + N) + N
        per_sample = T * 6 * N
    data = tr.val_samples * T * (d + 1)
    total = 4 * params + data + (tr.batch_size + min(EVAL_CHUNK, tr.val_samples)) * per_sample
    return int(total * size)


def _parse_size(text: str) -> Optional[int]:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text in ("OFF", "NONE", "0"):
        return None
    unit = text[-1] if text and text[-1] in _UNITS else ""
    try:
        value = float(text[: len(text) - len(unit)] if unit else text)
    except ValueError:
        raise ConfigError(
            f"SPARSEMEM_MEMORY_LIMIT = {text!r}: give a size such as 64G, 512M, a number of bytes, or off"
        ) from None
    if not value > 0:
        raise ConfigError(f"SPARSEMEM_MEMORY_LIMIT = {text!r}: must be positive, or off")
    return int(value * _UNITS[unit])


def memory_limit(device: str) -> Optional[int]:
    """Bytes a run may use on ``device``: SPARSEMEM_MEMORY_LIMIT, else the device's memory (None: no limit)."""
    env = os.environ.get("SPARSEMEM_MEMORY_LIMIT")
    if env is not None:
        return _parse_size(env)
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = int(device[5:]) if device.startswith("cuda:") else 0
            return torch.cuda.get_device_properties(index).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_runs(cfgs: Iterable[RunConfig]) -> None:
    """Every run's device exists, its trackers are installed and its estimated memory fits the limit."""
    from .trackers import check_trackers

    cfgs = list(cfgs)
    check_trackers(cfgs)
    limits: dict[str, Optional[int]] = {}
    for cfg in cfgs:
        check_device(cfg.train.device)
        device = cfg.train.device
        if device not in limits:
            limits[device] = memory_limit(device)
        limit = limits[device]
        need = estimate_bytes(cfg)
        if limit is not None and need > limit:
            who = f"run {cfg.name}: " if cfg.name else ""
            raise ConfigError(
                f"{who}needs about {_gib(need)} of memory (task.seq_len = {cfg.task.seq_len}, "
                f"model.layers = {cfg.model.layers}, train.batch_size = {cfg.train.batch_size}, "
                f"train.val_samples = {cfg.train.val_samples}), more than the {_gib(limit)} "
                "limit; shrink it, or raise the limit with SPARSEMEM_MEMORY_LIMIT (e.g. 256G, or off)"
            )


def concrete_device(name: str) -> str:
    """``auto`` as the device it stands for here (cuda where present, else cpu); other names unchanged."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
