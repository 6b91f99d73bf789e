"""Relative positional encodings: distance s -> bias p_h phi(s), per head.

Every type maps the lags s = 0..S-1 to an (H, S) table of biases that the
attention adds to its logits (PAPER.md section 2):

=============  ==============================================  ==========
type           bias at lag s                                   trainable
=============  ==============================================  ==========
lin            -p_h s                                          p_h
alibi          -p_h s, p_h = 2^(-8h/H), h = 1..H               none
log            -p_h log s for s >= 1, -inf at s = 0            p_h
t5             -p_h r(s), r the T5 bucket of s (B, D)          p_h
kerple_log     -p_h log(1 + a_h s)                             p_h, a_h
none           0                                               none
learned        b_h(min(s, max_distance - 1))                   b_h(.)
=============  ==============================================  ==========

p_h and a_h are kept positive as exp of a free parameter. With ``sign="free"``
(``model.rpe_sign``, a variant outside the paper's family) p_h is the parameter
itself and may turn negative, so a head's kernel can grow with the lag.

TMX attention evaluates phi at the real number u = w_h . x_t (``phi_real``),
where the paper's phi is undefined for some u; we clamp: log-type uses
phi(max(u, 1e-6)) (log s is undefined for s <= 0), kerple_log uses
phi(max(u, 0)) (log(1 + a u) is undefined for u <= -1/a). lin-type needs none.
Normalization-free attention adds no guard: where the exact weights exceed
the dtype's range (TMX weights reach e^(p_h |phi(u)|), past float32 near
p_h |phi(u)| = 88, and its squared loss near 44) the output or the loss
overflows, and the run ends as diverged at that step.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Optional

import torch
from torch import nn

from ..config import RPE_TYPES, SIGNED_RPE_TYPES  # noqa: F401  (RPE_TYPES re-exported for the registry)

LIN_TYPES = ("lin", "alibi")
LOG_TYPES = ("log", "t5", "kerple_log")


@functools.lru_cache(maxsize=64)
def _t5_table(B: int, D: int) -> tuple[int, ...]:
    """r(n) for n = 0..D, in integers. For B <= n < D the bucket is B + k with k the largest integer such
    that B log(n/B) / log(D/B) >= k, i.e. n^B >= D^k B^(B-k): exact at the boundaries, where a
    floating-point log can land one bucket low (B = 12, D = 192, n = 96 is exactly B + 9)."""
    table = list(range(min(B, D + 1)))
    for n in range(B, D):
        k, lhs = 0, n**B
        while k + 1 < B and lhs >= D ** (k + 1) * B ** (B - k - 1):
            k += 1
        table.append(B + k)
    return tuple(table + [2 * B - 1])


def t5_bucket(s: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """The T5 bucket r(n): n below B, B + floor(B log(n/B) / log(D/B)) up to D, 2B - 1 from D on."""
    table = torch.tensor(_t5_table(buckets, max_distance), dtype=torch.float64, device=s.device)
    return table[s.to(torch.long).clamp(0, max_distance)]


def default_p(kind: str, heads: int) -> torch.Tensor:
    """Initial p_h: a geometric spread from 1 down, so heads start at different ranges."""
    h = torch.arange(heads, dtype=torch.float64)
    if kind == "alibi":
        return 2.0 ** (-8.0 * (h + 1) / heads)
    span = 8.0 if kind == "lin" else 3.0
    return 2.0 ** (-span * h / heads)


class RPE(nn.Module):
    """Relative positional encoding for H heads."""

    def __init__(self, kind: str, heads: int, *, init: Optional[float] = None,
                 buckets: int = 16, max_distance: int = 128, sign: str = "positive"):
        super().__init__()
        self.kind = kind
        self.heads = heads
        self.buckets = buckets
        self.max_distance = max_distance
        p0 = default_p(kind, heads) if init is None else torch.full((heads,), float(init), dtype=torch.float64)
        if sign == "free":
            if kind not in SIGNED_RPE_TYPES:
                raise ValueError(f"rpe {kind!r} has no trainable p to free in sign")
            self.signed_p = nn.Parameter(p0.float())
        elif kind in SIGNED_RPE_TYPES:
            self.log_p = nn.Parameter(p0.log().float())
        elif kind == "alibi":
            self.register_buffer("log_p", p0.log().float())
        if kind == "kerple_log":
            self.log_a = nn.Parameter(torch.zeros(heads))
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(heads, max_distance))

    @property
    def p(self) -> Optional[torch.Tensor]:
        """The per-head scale p_h (H,), or None for types without one."""
        if hasattr(self, "signed_p"):
            return self.signed_p
        return self.log_p.exp() if hasattr(self, "log_p") else None

    @property
    def trainable_p(self) -> bool:
        """Whether p_h is a parameter that currently needs a gradient."""
        own = getattr(self, "signed_p", None)
        if own is None and isinstance(getattr(self, "log_p", None), nn.Parameter):
            own = self.log_p
        return own is not None and own.requires_grad

    @property
    def inf_at_zero(self) -> bool:
        """Whether lag 0 is inadmissible (bias -inf): log-type heads never see x_t."""
        return self.kind == "log"

    def forward(self, length: int, device=None, dtype=torch.float32, reverse: bool = False) -> torch.Tensor:
        """Biases for lags s = 0..length-1: (H, length), or s = length-1..0 if ``reverse``.

        May hold -inf (log at s = 0).
        """
        H = self.heads
        if device is None:  # where the module lives
            device = next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device
        s = torch.arange(length, device=device, dtype=dtype)
        if reverse:
            s = s.flip(0)
        if self.kind == "none":
            return torch.zeros(H, length, device=device, dtype=dtype)
        if self.kind == "learned":
            idx = s.long().clamp(max=self.max_distance - 1)
            return self.table.to(dtype)[:, idx]
        p = self.p.to(dtype)[:, None]
        if self.kind in LIN_TYPES:
            return -p * s
        if self.kind == "log":
            # -inf at s = 0 through `where`, so no gradient meets the infinity
            finite = -p * torch.log(s.clamp(min=1))
            return torch.where(s >= 1, finite, torch.full_like(finite, -math.inf))
        if self.kind == "t5":
            r = t5_bucket(s, self.buckets, self.max_distance).to(dtype)
            return -p * r
        a = self.log_a.exp().to(dtype)[:, None]  # kerple_log
        return -p * torch.log1p(a * s)

    def phi_real(self, u: torch.Tensor) -> torch.Tensor:
        """phi extended to real arguments u (..., H), for TMX attention; times p_h."""
        p = self.p.to(u.dtype)
        if self.kind in LIN_TYPES:
            return -p * u
        if self.kind == "log":
            return -p * torch.log(u.clamp(min=1e-6))
        if self.kind == "kerple_log":
            return -p * torch.log1p(self.log_a.exp().to(u.dtype) * u.clamp(min=0))
        raise ValueError(f"rpe {self.kind!r} has no real-argument phi for tmx attention")

    def extra_repr(self) -> str:
        return f"kind={self.kind}, heads={self.heads}" + (", sign=free" if hasattr(self, "signed_p") else "")
