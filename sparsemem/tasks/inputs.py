"""Token distributions for x_t, sampled on the generator's device."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import model_validator

from ..fields import FieldError, Float, Strict
from ..registry import INPUTS


class InputConfig(Strict):
    """Distribution of the tokens x_t (i.i.d. over time and coordinates)."""

    kind: Literal[INPUTS] = "rademacher"
    values: Optional[list[Float]] = None  # the value set of `discrete`

    @model_validator(mode="after")
    def _check(self) -> "InputConfig":
        if self.kind == "discrete":
            if not self.values or len(set(self.values)) != len(self.values):
                raise FieldError("values", self.values, "discrete input needs a list of distinct numbers")
        elif self.values is not None:
            raise FieldError("values", self.values, f"values apply to discrete input only, not {self.kind}")
        return self

    def value_set(self) -> Optional[list[float]]:
        """The finite value set of a discrete input, or None for continuous ones."""
        if self.kind == "rademacher":
            return [-1.0, 1.0]
        if self.kind == "discrete":
            return list(self.values)
        return None


def sample_inputs(
    cfg: InputConfig, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
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
