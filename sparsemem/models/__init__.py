"""The model family of PAPER.md section 2."""

from __future__ import annotations

from ..config import ModelConfig
from .attention import Attention
from .rpe import RPE
from .transformer import FFN, Transformer


def make_model(cfg: ModelConfig, task=None, *, input_dim: int | None = None, output: str | None = None) -> Transformer:
    """Build the Transformer for a task (its token dim and output mode)."""
    if task is not None:
        input_dim = task.dim if input_dim is None else input_dim
        output = task.cfg.output if output is None else output
    return Transformer(cfg, input_dim=input_dim or 1, output=output or "last")


__all__ = ["Attention", "RPE", "FFN", "Transformer", "make_model"]
