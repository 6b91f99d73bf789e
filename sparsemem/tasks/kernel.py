"""Task III: essentially M-sparse memory, y_t = f((X*rho_1)(t), ..., (X*rho_M)(t)).

Kernels: ``exp:BETA`` rho(s) = exp(-BETA s); ``power:BETA`` rho(s) = s^-BETA for
s >= 1 and rho(0) = 0 (our choice; the paper leaves rho(0) open); ``delta:T``
rho(s) = 1{s = T}; or an explicit list rho(0), rho(1), ...
Kernels are truncated to the sequence length and not normalized.
"""

from __future__ import annotations

import torch

from ..config import parse_kernel
from .base import Task, causal_conv


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
            z = causal_conv(x, rho)  # (B, T, M, d)
        return self._finish(self.readout(z.flatten(-2)))
