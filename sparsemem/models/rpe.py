"""Relative positional encodings: distance s -> bias p_h phi(s), per head.

Every type maps the lags s = 0..S-1 to an (H, S) table of biases that the
attention adds to its logits (docs/models.md):

=============  ==============================================  ==========
type           bias at lag s                                   trainable
=============  ==============================================  ==========
lin            -p_h s                                          p_h
alibi          -p_h s, p_h ALiBi's published slopes (below)        none
log            -p_h log s for s >= 1, -inf at s = 0            p_h
t5             -p_h r(s), r the T5 bucket of s (B, D)          p_h
kerple_log     -p_h log(1 + a_h s)                             p_h, a_h
none           0                                               none
learned        b_h(min(s, max_distance - 1))                   b_h(.)
=============  ==============================================  ==========

ALiBi's slopes are p_h = 2^(-8h/H) for H a power of two; for other H, the slopes of the largest power
of two P below H, then every other slope of 2P heads (registry.alibi_slopes).

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

import itertools
from typing import Optional

import torch
from torch import nn

from ..registry import RPES, bias, rpes

LIN_TYPES = rpes(family="lin")
LOG_TYPES = rpes(family="log")


def default_p(kind: str, heads: int) -> torch.Tensor:
    """Initial p_h: fixed slopes where the type has them, else a geometric spread from 1 down, so heads
    start at different ranges."""
    fixed = RPES[kind].fixed_p
    if fixed is not None:
        return fixed(heads)
    h = torch.arange(heads, dtype=torch.float64)
    span = 8.0 if kind == "lin" else 3.0
    return 2.0 ** (-span * h / heads)


class RPE(nn.Module):
    """Relative positional encoding for H heads."""

    def __init__(
        self,
        kind: str,
        heads: int,
        *,
        init: Optional[float] = None,
        buckets: int = 16,
        max_distance: int = 128,
        sign: str = "positive",
    ):
        super().__init__()
        self.kind = kind
        self.heads = heads
        self.buckets = buckets
        self.max_distance = max_distance
        self.entry = entry = RPES[kind]
        # evaluated here, not inside a compiled forward (where its .item() broke the graph)
        self._inf_at_zero = bool(entry.inf_at_zero)
        p0 = default_p(kind, heads) if init is None else torch.full((heads,), float(init), dtype=torch.float64)
        if sign == "free":
            if not entry.signed:
                raise ValueError(f"rpe {kind!r} has no trainable p to free in sign")
            self.signed_p = nn.Parameter(p0.float())
        elif "p" in entry.params:
            self.log_p = nn.Parameter(p0.log().float())
        elif entry.fixed_p is not None:
            self.register_buffer("log_p", p0.log().float())
        if "a" in entry.params:
            self.log_a = nn.Parameter(torch.zeros(heads))
        if entry.table:
            self.table = nn.Parameter(torch.zeros(heads, max_distance))

    # the tensors a type may store (parameters, or the fixed slopes' buffer), by state-dict name
    STORED = ("signed_p", "log_p", "log_a", "table")

    @property
    def p(self) -> Optional[torch.Tensor]:
        """The per-head scale p_h (H,), or None for types without one."""
        return self.scales(self._stored()).get("p")

    def _stored(self) -> dict:
        return {n: getattr(self, n) for n in self.STORED if hasattr(self, n)}

    @staticmethod
    def scales(stored: dict) -> dict:
        """p, a and the learned table from the stored tensors (names as in ``STORED``), with any leading
        axes (a fleet's members)."""
        out = {}
        if "signed_p" in stored:
            out["p"] = stored["signed_p"]
        elif "log_p" in stored:
            out["p"] = stored["log_p"].exp()
        if "log_a" in stored:
            out["a"] = stored["log_a"].exp()
        if "table" in stored:
            out["table"] = stored["table"]
        return out

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
        return self._inf_at_zero

    def forward(self, length: int, device=None, dtype=torch.float32, reverse: bool = False) -> torch.Tensor:
        """Biases for lags s = 0..length-1: (H, length), or s = length-1..0 if ``reverse``.

        May hold -inf (log at s = 0).
        """
        if device is None:  # where the module lives
            device = next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device
        return self.bias_of(self.scales(self._stored()), length, device, dtype, reverse)

    def bias_of(self, scales: dict, length: int, device, dtype=torch.float32, reverse: bool = False) -> torch.Tensor:
        """``forward`` from given ``scales`` (p (..., H), a (..., H), table (..., H, max_distance)): (..., H,
        length), the leading axes of the scales first. A fleet passes its members' stacked scales."""
        s = torch.arange(length, device=device, dtype=dtype)
        if reverse:
            s = s.flip(0)
        if self.entry.table:
            idx = s.long().clamp(max=self.max_distance - 1)
            return scales["table"].to(dtype)[..., idx]
        shape = {"buckets": self.buckets, "max_distance": self.max_distance}
        if "a" in scales:
            shape["a"] = scales["a"].to(dtype)[..., None]
        f = self.entry.phi(s, **shape)
        if "p" not in scales:  # no scale: phi itself (none)
            return f.expand(self.heads, length).contiguous()
        return bias(scales["p"].to(dtype)[..., None], f, guard=self.inf_at_zero)

    def phi_real(self, u: torch.Tensor) -> torch.Tensor:
        """phi extended to real arguments u (..., H), for TMX attention; times p_h."""
        if self.entry.phi_real is None:
            raise ValueError(f"rpe {self.kind!r} has no real-argument phi for tmx attention")
        shape = {"a": self.log_a.exp().to(u.dtype)} if hasattr(self, "log_a") else {}
        return self.p.to(u.dtype) * self.entry.phi_real(u, **shape)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, heads={self.heads}" + (", sign=free" if hasattr(self, "signed_p") else "")
