"""A decoder-only byte language model from the same blocks as the Transformer.

Token embedding, L blocks (``block.py``: H-head attention with any RPE, dp /
dp_free / tmx, and a width-m FFN, each with its residual), then a linear head
to the vocabulary. For text the practical switches (``layer_norm``, ``scale``)
are usually on.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..throughput import flops_per_token
from .attention import Attention
from .block import FFN, Block, norm_factory
from .fused import num_params


class LanguageModel(nn.Module):
    """x (B, T) token ids -> logits (B, T, vocab)."""

    def __init__(self, cfg: ModelConfig, vocab: int = 256):
        super().__init__()
        self.cfg = cfg
        D, L, m = cfg.dim, cfg.layers, cfg.ffn_width
        self.embed = nn.Embedding(vocab, D)
        self.attn = nn.ModuleList(Attention(cfg) for _ in range(L))
        self.ffn = nn.ModuleList(FFN(D, m, D) for _ in range(L)) if m > 0 else None
        norm = norm_factory(D, cfg.layer_norm)
        self.norm_attn = nn.ModuleList(norm() for _ in range(L))
        self.norm_ffn = nn.ModuleList(norm() for _ in range(L))
        self.norm_out = norm()
        self.head = nn.Linear(D, vocab)
        self.blocks = [
            Block(self.attn[l], self.ffn[l] if self.ffn is not None else None, self.norm_attn[l], self.norm_ffn[l])
            for l in range(L)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (B, T, D)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm_out(h))  # (B, T, vocab)

    def num_params(self) -> int:
        return num_params(self)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token at sequence length ``seq_len`` (``throughput.flops_per_token``)."""
        cfg = self.cfg
        return flops_per_token(self.num_params(), cfg.layers, cfg.heads * cfg.head_size, seq_len)

    def attention_kernels(self, length: int) -> list:
        return [a.kernels(length).cpu().numpy() for a in self.attn]
