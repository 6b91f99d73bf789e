"""A decoder-only byte language model from the same blocks as the Transformer.

Token embedding, L blocks of H-head attention (any RPE, dp / dp_free / tmx)
and width-m FFNs with residuals, then a linear head to the vocabulary. For
text the practical switches (``layer_norm``, ``scale``) are usually on.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .attention import Attention
from .transformer import FFN


class LanguageModel(nn.Module):
    """x (B, T) token ids -> logits (B, T, vocab)."""

    def __init__(self, cfg: ModelConfig, vocab: int = 256):
        super().__init__()
        self.cfg = cfg
        D, L, m = cfg.dim, cfg.layers, cfg.ffn_width
        self.embed = nn.Embedding(vocab, D)
        self.attn = nn.ModuleList(Attention(cfg) for _ in range(L))
        self.ffn = nn.ModuleList(FFN(D, m, D) for _ in range(L)) if m > 0 else None
        norm = (lambda: nn.LayerNorm(D)) if cfg.layer_norm else nn.Identity
        self.norm_attn = nn.ModuleList(norm() for _ in range(L))
        self.norm_ffn = nn.ModuleList(norm() for _ in range(L))
        self.norm_out = norm()
        self.head = nn.Linear(D, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for l, attn in enumerate(self.attn):
            h = h + attn(self.norm_attn[l](h))
            if self.ffn is not None:
                h = h + self.ffn[l](self.norm_ffn[l](h))
        return self.head(self.norm_out(h))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def attention_kernels(self, length: int) -> list:
        return [a.kernels(length).cpu().numpy() for a in self.attn]
