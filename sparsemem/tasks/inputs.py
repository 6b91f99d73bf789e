"""Token distributions for x_t, sampled on the generator's device."""

from __future__ import annotations

import torch

from ..config import InputConfig


def sample_inputs(cfg: InputConfig, shape: tuple[int, ...], generator: torch.Generator,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw i.i.d. tokens of the given shape (batch, seq_len, d)."""
    device = generator.device
    if cfg.kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=device)
        return (2 * bits - 1).to(dtype)
    if cfg.kind == "gaussian":
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if cfg.kind == "uniform":
        return 2 * torch.rand(shape, generator=generator, device=device, dtype=dtype) - 1
    values = torch.tensor(cfg.values, dtype=dtype, device=device)
    idx = torch.randint(0, len(cfg.values), shape, generator=generator, device=device)
    return values[idx]
