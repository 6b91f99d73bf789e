"""Task III: essentially M-sparse memory, y_t = f((X*rho_1)(t), ..., (X*rho_M)(t)).

Kernels: ``exp:BETA`` rho(s) = exp(-BETA s); ``power:BETA`` rho(s) = s^-BETA for
s >= 1 and rho(0) = 0 (our choice; the paper leaves rho(0) open); ``delta:T``
rho(s) = 1{s = T}; or an explicit list rho(0), rho(1), ...
Kernels are truncated to the sequence length and not normalized.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional, Union

import torch
from pydantic import Field, field_validator, model_validator

from ..fields import FieldError, Float, listify
from ..registry import KERNEL_FORMS
from .base import ReadoutTaskConfig, Task, memory_conv


def parse_kernel(spec: Union[str, list[float]]) -> tuple[str, Any]:
    """Parse one memory-kernel spec into (form, parameter)."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError("an explicit kernel list is empty")
        values = [float(v) for v in spec]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("an explicit kernel list holds a value that is not a finite number")
        return "list", values
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"kernel {spec!r} is not one of {', '.join(KERNEL_FORMS)}")
    form, _, arg = spec.partition(":")
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"kernel {spec!r}: {arg!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"kernel {spec!r}: {arg!r} is not a finite number")
    if form in ("exp", "power"):
        if not value > 0:
            raise ValueError(f"kernel {spec!r}: BETA must be > 0")
        return form, value
    if form == "delta":
        if value != int(value) or value < 0:
            raise ValueError(f"kernel {spec!r}: T must be an integer >= 0")
        return form, int(value)
    raise ValueError(f"kernel {spec!r} is not one of {', '.join(KERNEL_FORMS)}")


def check_kernel(spec, field: str = "kernels", seq_len: Optional[int] = None) -> tuple[str, Any]:
    """parse_kernel with the blame on ``field`` (FieldError); a delta lag must be below ``seq_len``."""
    try:
        form, arg = parse_kernel(spec)
    except ValueError as err:
        raise FieldError(field, spec, str(err)) from None
    if seq_len is not None and form == "delta" and arg >= seq_len:
        raise FieldError(field, spec, f"delta lag must be below seq_len={seq_len}")
    return form, arg


class KernelTaskConfig(ReadoutTaskConfig):
    """Task III: the memory kernels rho_1..rho_M (specs parsed by ``parse_kernel``) and the readout f."""

    kind: Literal["kernel"] = "kernel"
    kernels: list[Union[str, list[Float]]] = Field(default_factory=list)

    _norm_kernels = field_validator("kernels", mode="before")(listify)

    @model_validator(mode="after")
    def _check(self) -> "KernelTaskConfig":
        for spec in self.kernels:
            check_kernel(spec)
        if not self.kernels:
            raise FieldError(
                "kernels", self.kernels, f"a kernel task needs a non-empty list of {', '.join(KERNEL_FORMS)}"
            )
        for spec in self.kernels:
            check_kernel(spec, seq_len=self.seq_len)
        self._check_readout()
        return self

    def memory_size(self) -> int:
        return len(self.kernels) * self.dim


def kernel_values(spec, length: int, dtype=torch.float64) -> torch.Tensor:
    """rho(0..length-1) for one kernel spec."""
    form, arg = parse_kernel(spec)
    s = torch.arange(length, dtype=dtype)
    if form == "exp":
        return torch.exp(-arg * s)
    if form == "power":
        return torch.where(s >= 1, s.clamp(min=1) ** (-arg), torch.zeros_like(s))
    if form == "delta":
        return (s == arg).to(dtype)
    vals = torch.zeros(length, dtype=dtype)
    given = torch.tensor(arg[:length], dtype=dtype)
    vals[: len(given)] = given
    return vals


class KernelTask(Task):
    def __init__(self, cfg):
        super().__init__(cfg)
        # rho_m(s) for m = 1..M, s = 0..T-1: (M, T)
        self.rho = torch.stack([kernel_values(k, cfg.seq_len) for k in cfg.kernels])

    def target(self, x: torch.Tensor) -> torch.Tensor:
        rho = self.rho.to(x.device)
        if self.cfg.output == "last":
            # (X*rho)(T-1) = sum_s x_{T-1-s} rho(s)
            z = torch.einsum("btd,mt->bmd", x.flip(1), rho.to(x.dtype))[:, None]
        else:
            z = memory_conv(x, rho)  # (B, T, M, d)
        return self._finish(self.readout(z.flatten(-2)))
