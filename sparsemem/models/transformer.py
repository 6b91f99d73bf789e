"""The Transformer of docs/models.md (the paper's eq. 2-4), block by block.

    x^(0)_t     = W_E x_t + b_E                                  (B, T, D)
    X^(l)       = Block^(l)(X^(l-1))                              l = 1..L-1
    X^(L-1/2)   = X^(L-1) + Attn^(L)(X^(L-1))
    y_t         = FFN^(L)(X^(L-1/2))_t                            (B, T) or (B,)

(``block.py``: X^(l-1/2) = X + Attn(X), X^(l) = X^(l-1/2) + FFN(X^(l-1/2)).)
No LayerNorm and no 1/sqrt(d_k) by default (``layer_norm`` and ``scale``
switch them on, pre-norm). ``ffn_width: 0`` makes the model FFN-free: the
hidden FFNs are dropped and the readout is linear. ``ffn_precision`` rounds
every hidden FFN's output to an integer (lin-type RPE) or to the log of a
positive integer (log-type RPE), with a straight-through gradient.

Fast path: one layer read at the last position computes its attention from
the raw tokens (``Attention.last_from_tokens``), O(B H T d).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..registry import RPES
from .attention import Attention
from .block import FFN, Block, norm_factory
from .fused import num_params


class Transformer(nn.Module):
    """x (B, T, d) -> y (B, T) for output ``all``, (B,) for output ``last``."""

    def __init__(self, cfg: ModelConfig, input_dim: int = 1, output: str = "last", token_values=None):
        """``token_values``: the values a one-coordinate token takes, where finitely many (the task's
        input); the first layer's last row then takes ``alphabet_softmax``."""
        super().__init__()
        self.cfg = cfg
        self.output = output
        D, L, m = cfg.dim, cfg.layers, cfg.ffn_width
        # modules in this order (attentions, then FFNs, then the readout): the order initialisation draws in
        self.embed = nn.Linear(input_dim, D)
        self.attn = nn.ModuleList(Attention(cfg) for _ in range(L))
        if token_values and input_dim == 1:
            self.attn[0].token_values = tuple(float(v) for v in token_values)
        self.ffn = nn.ModuleList(FFN(D, m, D) for _ in range(L - 1)) if m > 0 else None
        self.readout = FFN(D, m, 1) if m > 0 else nn.Linear(D, 1)
        norm = norm_factory(D, cfg.layer_norm)
        self.norm_attn = nn.ModuleList(norm() for _ in range(L))
        self.norm_ffn = nn.ModuleList(norm() for _ in range(L))  # the last one feeds the readout
        self.log_precision = RPES[cfg.rpe].family == "log"
        precision = ("log" if self.log_precision else "lin") if cfg.ffn_precision else None
        self.blocks = [
            Block(
                self.attn[l],
                self.ffn[l] if self.ffn is not None and l < L - 1 else None,
                self.norm_attn[l],
                self.norm_ffn[l],
                precision,
            )
            for l in range(L)
        ]

    def _time_first(self) -> bool:
        """One layer read at the last position: attention straight from the raw tokens."""
        return len(self.attn) == 1 and self.output == "last" and self.attn[0].impl == "fast" and not self.cfg.layer_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.readout(self.stream(x))[..., 0]
        return y[:, -1] if self.output == "last" else y

    def stream(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream the readout sees: (B, 1, D) for output last, else (B, T, D)."""
        if self._time_first():
            return self.embed(x[:, -1:]) + self.attn[0].last_from_tokens(x, self.embed)  # (B, 1, D)
        h = self.embed(x)  # x^(0)
        last = self.output == "last"
        for l, block in enumerate(self.blocks):
            h = block(h, last_only=last and l == len(self.blocks) - 1)
        return self.blocks[-1].norm_ffn(h)

    def num_params(self) -> int:
        return num_params(self)

    def attention_kernels(self, length: int) -> list:
        """Per layer, the (H, length) weights over lags at the last position.

        Exact attention weights for dp_free heads; the RPE part for dp heads.
        """
        return [a.kernels(length).cpu().numpy() for a in self.attn]
