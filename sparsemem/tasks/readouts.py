"""Readouts f: the function applied to the memory vector z = (z_1, ..., z_n)."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from ..fields import FieldError, Float, Int, Strict
from ..registry import READOUTS


class ReadoutConfig(Strict):
    """The readout f applied to the memory vector z."""

    kind: Literal[READOUTS] = "sum"
    width: Int = Field(64, ge=1)  # relu_net: number of ReLU units
    weights: Optional[list[Float]] = None  # linear: one weight per entry of z

    @model_validator(mode="after")
    def _check(self) -> "ReadoutConfig":
        if self.kind == "linear" and not self.weights:
            raise FieldError("weights", self.weights, "a linear readout needs weights, one number per entry of z")
        return self


class Readout:
    """f(z) over the last axis of z; relu_net weights are drawn once from ``seed``."""

    def __init__(self, cfg: ReadoutConfig, size: int, seed: int):
        self.cfg = cfg
        self.size = size
        self.weights = None
        if cfg.kind == "linear":
            self.weights = torch.tensor(cfg.weights, dtype=torch.float64)
        elif cfg.kind == "relu_net":
            gen = torch.Generator().manual_seed(seed)
            # w_k ~ N(0, I_n), k = 1..width; f(z) = sum_k relu(w_k . z)
            self.weights = torch.randn(cfg.width, size, generator=gen, dtype=torch.float64)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.kind
        if kind == "sum":
            return z.sum(-1)
        if kind == "product":
            return z.prod(-1)
        w = self.weights.to(device=z.device, dtype=z.dtype)
        if kind == "linear":
            return z @ w
        return torch.relu(z @ w.T).sum(-1)
