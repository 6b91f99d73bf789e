"""The Transformer of PAPER.md section 2 (eq. 2-4), block by block.

    x^(0)_t     = W_E x_t + b_E                                  (B, T, D)
    X^(l-1/2)   = X^(l-1) + Attn^(l)(X^(l-1))                     l = 1..L
    X^(l)       = X^(l-1/2) + FFN^(l)(X^(l-1/2))                  l = 1..L-1
    y_t         = FFN^(L)(X^(L-1/2))_t                            (B, T) or (B,)

No LayerNorm and no 1/sqrt(d_k) by default (``layer_norm`` and ``scale``
switch them on, pre-norm). ``ffn_width: 0`` makes the model FFN-free: the
hidden FFNs are dropped and the readout is linear. ``ffn_precision`` rounds
every hidden FFN's output to an integer (lin-type RPE) or to the log of a
positive integer (log-type RPE), with a straight-through gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .attention import Attention
from ..registry import RPES


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


class Transformer(nn.Module):
    """x (B, T, d) -> y (B, T) for output ``all``, (B,) for output ``last``."""

    def __init__(self, cfg: ModelConfig, input_dim: int = 1, output: str = "last"):
        super().__init__()
        self.cfg = cfg
        self.output = output
        D, L, m = cfg.dim, cfg.layers, cfg.ffn_width
        self.embed = nn.Linear(input_dim, D)
        self.attn = nn.ModuleList(Attention(cfg) for _ in range(L))
        self.ffn = nn.ModuleList(FFN(D, m, D) for _ in range(L - 1)) if m > 0 else None
        self.readout = FFN(D, m, 1) if m > 0 else nn.Linear(D, 1)
        norm = (lambda: nn.LayerNorm(D)) if cfg.layer_norm else nn.Identity
        self.norm_attn = nn.ModuleList(norm() for _ in range(L))
        self.norm_ffn = nn.ModuleList(norm() for _ in range(L))  # the last one feeds the readout
        self.log_precision = RPES[cfg.rpe].family == "log"

    def _time_first(self) -> bool:
        """One layer read at the last position: attention straight from the raw tokens."""
        return (len(self.attn) == 1 and self.output == "last" and self.attn[0].impl == "fast"
                and not self.cfg.layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.readout(self.stream(x))[..., 0]
        return y[:, -1] if self.output == "last" else y

    def stream(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream the readout sees: (B, 1, D) for output last, else (B, T, D)."""
        if self._time_first():
            return self.embed(x[:, -1:]) + self.attn[0].last_from_tokens(x, self.embed)  # (B, 1, D)
        h = self.embed(x)
        L = len(self.attn)
        last = self.output == "last"
        for l in range(L):
            only_last = last and l == L - 1
            a = self.attn[l](self.norm_attn[l](h), last_only=only_last)
            h = (h[:, -1:] if only_last else h) + a
            if l < L - 1 and self.ffn is not None:
                f = self.ffn[l](self.norm_ffn[l](h))
                if self.cfg.ffn_precision:
                    f = round_with_precision(f, self.log_precision)
                h = h + f
        return self.norm_ffn[L - 1](h)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def attention_kernels(self, length: int) -> list:
        """Per layer, the (H, length) weights over lags at the last position.

        Exact attention weights for dp_free heads; the RPE part for dp heads.
        """
        return [a.kernels(length).cpu().numpy() for a in self.attn]
