"""The model family of docs/models.md."""

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


def sums_per_token_value(cfg) -> bool:
    """Whether a run (RunConfig) trained alone and eagerly takes ``alphabet_softmax``: one softmax DP layer read
    at the last position, on one-coordinate tokens of a few known values (the task's input)."""
    m, t = cfg.model, cfg.task
    return (
        m.arch == "transformer"
        and t.kind != "text"
        and (m.attention, m.normalize, m.layers, m.impl, m.layer_norm) == ("dp", True, 1, "fast", False)
        and t.output == "last"
        and t.dim == 1
        and t.input.value_set() is not None
    )


def make_model(cfg: ModelConfig, task=None, *, input_dim: int | None = None, output: str | None = None):
    """Build the model for a task: the Transformer (its token dim and output mode),
    or a byte language model for a text task."""
    if task is not None and task.cfg.kind == "text":
        if cfg.arch != "transformer":
            from ..config import ConfigError

            raise ConfigError(f"model.arch = {cfg.arch!r}: text tasks take the transformer only")
        return LanguageModel(cfg, vocab=task.vocab)
    values = None
    if task is not None:
        input_dim = task.dim if input_dim is None else input_dim
        output = task.cfg.output if output is None else output
        values = task.cfg.input.value_set()
    if cfg.arch == "transformer":
        return Transformer(cfg, input_dim=input_dim or 1, output=output or "last", token_values=values)
    kind = {"linear_rnn": LinearRNN, "lstm": LSTMBaseline}[cfg.arch]
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
    "sums_per_token_value",
]
