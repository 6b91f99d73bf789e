"""The common part of every target family."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from ..convolution import causal_conv
from ..fields import SEED_MAX, FieldError, Int, Strict, kind_shorthand
from .inputs import InputConfig, sample_inputs
from .readouts import Readout, ReadoutConfig

# Validation data are drawn from a generator seeded by task.seed plus this.
VALIDATION_SEED_OFFSET = 7_919


class TaskConfigBase(Strict):
    """What every target family has: its sequences, tokens, output mode and seed."""

    seq_len: Int = Field(64, ge=1)
    dim: Int = Field(1, ge=1)  # d, the token dimension
    input: InputConfig = Field(default_factory=InputConfig)
    output: Literal["last", "all"] = "last"
    seed: Int = Field(0, ge=0, le=SEED_MAX)  # seeds the target itself (random g, relu_net weights, validation set)

    _norm_input = field_validator("input", mode="before")(kind_shorthand)


class ReadoutTaskConfig(TaskConfigBase):
    """A family whose target is a readout f of a memory vector z."""

    readout: ReadoutConfig = Field(default_factory=ReadoutConfig)

    _norm_readout = field_validator("readout", mode="before")(kind_shorthand)

    def _check_readout(self) -> None:
        if self.readout.kind == "linear" and len(self.readout.weights) != self.memory_size():
            raise FieldError(
                "readout.weights",
                self.readout.weights,
                f"linear readout needs {self.memory_size()} weights, one per entry of z",
            )

    def memory_size(self) -> int:
        """Length of the vector z the readout sees."""
        raise NotImplementedError


def check_lags(cfg) -> None:
    """Every lag (or lag bound) lies in [0, seq_len)."""
    for lag in cfg.lags:
        if not 0 <= lag < cfg.seq_len:
            raise FieldError("lags", lag, f"each lag must be in [0, seq_len) = [0, {cfg.seq_len})")


def gather_lagged(x: torch.Tensor, positions: torch.Tensor, batched: bool = False) -> torch.Tensor:
    """x at integer positions (which may be < 0: the value there is 0).

    x: (B, T, d); positions: (*S), shared by the batch, or (B, *S) if ``batched``.
    Returns (B, *S, d).
    """
    B, T, d = x.shape
    if not batched:
        positions = positions.expand(B, *positions.shape)
    flat = positions.reshape(B, -1)
    got = torch.gather(x, 1, flat.clamp(min=0)[..., None].expand(-1, -1, d))
    got = got * (flat >= 0)[..., None].to(x.dtype)
    return got.reshape(*positions.shape, d)


def memory_conv(x: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """(X*rho_m)(t) = sum_{s<=t} x_{t-s} rho_m(s) for every t, via FFT (``convolution.causal_conv``).

    x: (B, T, d), rho: (M, T). Returns (B, T, M, d) in x's dtype.
    """
    return causal_conv(rho, x[:, :, None, :]).to(x.dtype)


class Task:
    """A target family: ``sample(batch, generator) -> (x, y)``.

    x has shape (B, T, d); y has shape (B,) for output ``last`` and (B, T) for
    ``all``. ``target(x)`` is the deterministic map x -> y.
    """

    def __init__(self, cfg: ReadoutTaskConfig):
        self.cfg = cfg
        self.seq_len = cfg.seq_len
        self.dim = cfg.dim
        self.readout = Readout(cfg.readout, cfg.memory_size(), seed=cfg.seed)

    def query_positions(self, device) -> torch.Tensor:
        T = self.seq_len
        if self.cfg.output == "last":
            return torch.tensor([T - 1], device=device)
        return torch.arange(T, device=device)

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        """(B, Tq) -> (B,) for last-position output."""
        return y[:, 0] if self.cfg.output == "last" else y

    def target(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_x(self, batch: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
        return sample_inputs(self.cfg.input, (batch, self.seq_len, self.dim), generator, dtype)

    def sample(self, batch: int, generator: torch.Generator, dtype=torch.float32):
        x = self.sample_x(batch, generator, dtype)
        return x, self.target(x.to(torch.float64)).to(dtype)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training and validation loss: mean squared error."""
        return torch.mean((pred - y) ** 2)

    def member_losses(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of each of K predictions at once (a fleet's members): pred (K, ...) against y of the
        same shape or shared (pred's shape less K); (K,)."""
        if type(self).loss is not Task.loss:  # a task with a loss of its own: member by member
            return torch.func.vmap(self.loss, in_dims=(0, 0 if y.dim() == pred.dim() else None))(pred, y)
        return ((pred - y) ** 2).flatten(1).mean(1)

    def variance(self, y: torch.Tensor):
        """Var(y), the scale of relative MSE."""
        return float(y.double().var(unbiased=False)) if y.numel() > 1 else None

    def validation_set(self, n: int, device="cpu", dtype=torch.float32):
        """A fixed set of n samples, the same for every model and training seed."""
        gen = torch.Generator(device=device).manual_seed(self.cfg.seed + VALIDATION_SEED_OFFSET)
        return self.sample(n, gen, dtype)
