"""The model family of PAPER.md section 2."""

from __future__ import annotations

from ..config import ModelConfig
from .attention import Attention
from .baselines import LinearRNN, LSTMBaseline
from .block import FFN
from .lm import LanguageModel
from .rpe import RPE
from .transformer import Transformer


def is_memory_parameter(name: str) -> bool:
    """RPE parameters and a recurrence's decay rates: they set how far back a model looks."""
    return ".rpe." in name or name.endswith("decay_logit")


def make_model(cfg: ModelConfig, task=None, *, input_dim: int | None = None, output: str | None = None):
    """Build the model for a task: the Transformer (its token dim and output mode),
    or a byte language model for a text task."""
    if task is not None and task.cfg.kind == "text":
        if cfg.arch != "transformer":
            from ..config import ConfigError

            raise ConfigError(f"model.arch = {cfg.arch!r}: text tasks take the transformer only")
        return LanguageModel(cfg, vocab=task.vocab)
    if task is not None:
        input_dim = task.dim if input_dim is None else input_dim
        output = task.cfg.output if output is None else output
    kind = {"transformer": Transformer, "linear_rnn": LinearRNN, "lstm": LSTMBaseline}[cfg.arch]
    return kind(cfg, input_dim=input_dim or 1, output=output or "last")


__all__ = [
    "Attention",
    "RPE",
    "FFN",
    "LanguageModel",
    "LinearRNN",
    "LSTMBaseline",
    "Transformer",
    "is_memory_parameter",
    "make_model",
]
