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
    width: Int = Field(64, ge=1)  # relu_net, relu_spline: number of ReLU units
    weights: Optional[list[Float]] = None  # linear: one weight per entry of z

    @model_validator(mode="after")
    def _check(self) -> "ReadoutConfig":
        if self.kind == "linear" and not self.weights:
            raise FieldError("weights", self.weights, "a linear readout needs weights, one number per entry of z")
        return self


class Readout:
    """f(z) over the last axis of z; relu_net and relu_spline weights are drawn once from ``seed``.

    relu_spline is a readout that needs width: along the direction s = v . z (v ~ N(0, I_n) scaled to
    |v|_1 = 1, so s lies in [-1, 1] on tokens in [-1, 1]) it is the piecewise-linear function through
    ``width`` points (t_k, y_k), knots t_k ~ U(-1, 1), values y_k ~ N(0, 1), constant beyond the end knots:
    f(z) = y_1 + sum_k a_k relu(s - t_k), exactly ``width`` ReLU units with random biases, and no fewer
    represent it (each knot is a kink).
    """

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
        elif cfg.kind == "relu_spline":
            gen = torch.Generator().manual_seed(seed)
            self.spline = _spline(cfg.width, torch.randn(size, generator=gen, dtype=torch.float64), gen)

    def units(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """relu_spline as (v, t, a, y_1): f(z) = y_1 + sum_k a_k relu(v . z - t_k), in float64."""
        if self.cfg.kind != "relu_spline":
            raise ValueError(f"a {self.cfg.kind} readout has no spline units")
        return self.spline

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.kind
        if kind == "sum":
            return z.sum(-1)
        if kind == "product":
            return z.prod(-1)
        if kind == "relu_spline":
            v, t, a, y1 = (u.to(device=z.device, dtype=z.dtype) if torch.is_tensor(u) else u for u in self.spline)
            return y1 + torch.relu((z @ v)[..., None] - t) @ a
        w = self.weights.to(device=z.device, dtype=z.dtype)
        if kind == "linear":
            return z @ w
        return torch.relu(z @ w.T).sum(-1)


def _spline(width: int, v: torch.Tensor, gen: torch.Generator):
    """(v / |v|_1, knots, slope changes, first value) of a random linear spline with ``width`` knots."""
    t = (2 * torch.rand(width, generator=gen, dtype=torch.float64) - 1).sort().values
    y = torch.randn(width, generator=gen, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    slopes = torch.cat([zero, (y[1:] - y[:-1]) / (t[1:] - t[:-1]), zero])  # 0 beyond the end knots
    return v / v.abs().sum(), t, slopes[1:] - slopes[:-1], float(y[0])
