"""Model FLOPs and utilization (MFU) for language-model runs.

A decoder's training step costs about 6 N FLOPs per token for its N
parameters (forward and backward) plus 12 L A T for attention scores and
weighted sums over T positions (A = H x head size, per layer), the count of
the PaLM paper's appendix B; MFU is the achieved rate over the device's peak.
Peaks are the dense bf16 tensor-core figures of the vendors' data sheets, used
only for runs under ``train.autocast=bf16``; ``SPARSEMEM_PEAK_TFLOPS`` sets the
peak for any device and precision (a CPU's, fp32's).
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .fields import ConfigError

# dense bf16 TFLOP/s, by a piece of torch.cuda.get_device_name (first match wins)
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
    ("L4", 121.0),
)


def flops_per_token(n_params: int, layers: int, attn_width: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 N + 12 L A T (A = heads x head size)."""
    return 6.0 * n_params + 12.0 * layers * attn_width * seq_len


def peak_flops(device: torch.device, autocast: str) -> Optional[float]:
    """The device's peak FLOP/s for MFU: ``SPARSEMEM_PEAK_TFLOPS`` where set, else the bf16 peak of a known
    GPU for a bf16 autocast run, else None (no MFU logged)."""
    env = os.environ.get("SPARSEMEM_PEAK_TFLOPS")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = 0.0
        if not value > 0:
            raise ConfigError(f"SPARSEMEM_PEAK_TFLOPS = {env!r}: the device's peak, a positive number of TFLOP/s")
        return value * 1e12
    if device.type != "cuda" or autocast != "bf16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in BF16_PEAK_TFLOPS if key in name), None)
