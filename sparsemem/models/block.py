"""One block of the paper's eq. 2-4 (docs/models.md), shared by the Transformer and the language model.

    X^(l-1/2) = X^(l-1) + Attn^(l)(norm(X^(l-1)))
    X^(l)     = X^(l-1/2) + FFN^(l)(norm(X^(l-1/2)))      (rounded with precision if asked)

The norms are identities unless ``layer_norm`` is on (pre-norm). A block is a
plain object over modules its model registers (``attn.l``, ``ffn.l``,
``norm_attn.l``, ``norm_ffn.l``), so parameter names, and with them saved
checkpoints, stay as they were before blocks existed.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class FFN(nn.Module):
    """sum_k a_k relu(b_k . x + c_k): (.., D) -> (.., out)."""

    def __init__(self, dim: int, width: int, out: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, width)
        self.fc2 = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def round_with_precision(f: torch.Tensor, log_type: bool) -> torch.Tensor:
    """Round to integers (lin) or to log of positive integers (log); identity gradient."""
    if log_type:
        exact = torch.log(torch.clamp(torch.round(torch.exp(f.clamp(max=60.0))), min=1.0))
    else:
        exact = torch.round(f)
    return f + (exact - f).detach()


def norm_factory(dim: int, layer_norm: bool):
    """Pre-norm LayerNorm where asked, else the identity."""
    return (lambda: nn.LayerNorm(dim)) if layer_norm else nn.Identity


class Block:
    """Attention then FFN, each with its residual; ``ffn=None`` leaves the FFN out (the Transformer's last
    block, whose FFN is the readout, and FFN-free models)."""

    def __init__(
        self,
        attn: nn.Module,
        ffn: Optional[nn.Module],
        norm_attn: nn.Module,
        norm_ffn: nn.Module,
        precision: Optional[str] = None,
    ):
        self.attn, self.ffn, self.norm_attn, self.norm_ffn = attn, ffn, norm_attn, norm_ffn
        self.precision = precision  # None, or "lin" / "log": how hidden FFN outputs are rounded

    def __call__(self, h: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """h (B, T, D) -> (B, T, D), or (B, 1, D) at the last position only."""
        a = self.attn(self.norm_attn(h), last_only=last_only)  # (B, T or 1, D)
        h = (h[:, -1:] if last_only else h) + a  # X^(l-1/2)
        if self.ffn is None:
            return h
        f = self.ffn(self.norm_ffn(h))
        if self.precision is not None:
            f = round_with_precision(f, self.precision == "log")
        return h + f  # X^(l)
