"""Configuration: schemas with their defaults, and loading with one-line errors.

A run is a :class:`RunConfig` with three parts, ``task``, ``model`` and
``train``. Configs come from YAML files plus dotted ``key=value`` overrides;
any bad value raises :class:`ConfigError`, whose message is one line naming the
field, the value and what is allowed.

- ``loading``: YAML, overrides, error messages;
- ``fields``: the field types every schema shares;
- ``schemas``: the model and training schemas, the run, and the task union;
  each task family's schema lives beside its generator in ``sparsemem.tasks``.

Components that take parameters (``task.input``, ``task.readout``) accept a
mapping ``{kind: NAME, ...}`` or the bare string ``NAME``.
"""

from __future__ import annotations

from ..fields import SEED_MAX, Bool, ConfigError, FieldError, Float, Int, Strict, kind_shorthand, listify
from ..registry import ARCHS as ARCH_NAMES
from ..registry import ATTENTION, KERNEL_FORMS, RPES, TASKS, TRACKERS
from ..registry import INPUTS as INPUT_KINDS
from ..registry import READOUTS as READOUT_KINDS
from ..tasks.adaptive import ADAPTIVE_EXAMPLES, ADAPTIVE_PRESETS, AdaptiveTaskConfig, table_key
from ..tasks.fixed import DEFAULT_LAGS as DEFAULT_FIXED_LAGS
from ..tasks.fixed import FixedTaskConfig
from ..tasks.inputs import InputConfig
from ..tasks.kernel import KernelTaskConfig, parse_kernel
from ..tasks.readouts import ReadoutConfig
from ..tasks.text import TextTaskConfig
from .loading import apply_overrides, examples, load_yaml, parse_yaml, validate_config
from .schemas import (
    ARCHS,
    ATTENTION_KINDS,
    HASH_NEUTRAL,
    LEGACY_TASK,
    RPE_TYPES,
    SIGNED_RPE_TYPES,
    TASK_ADAPTER,
    TASK_CONFIGS,
    TASK_KINDS,
    TMX_RPE_TYPES,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    hash_payload,
    task_config,
    unique_by_hash,
)


def catalogue() -> dict[str, tuple[str, ...]]:
    """What `sparsemem list` prints: each kind of name and the names that exist."""
    return {
        "arch": tuple(ARCH_NAMES),
        "rpe": tuple(RPES),
        "attention": tuple(ATTENTION),
        "task": tuple(TASKS),
        "adaptive example": ADAPTIVE_EXAMPLES,
        "input": INPUT_KINDS,
        "readout": READOUT_KINDS,
        "kernel": KERNEL_FORMS,
        "tracker": tuple(TRACKERS),
        "example": tuple(examples()),
    }


__all__ = [
    "ADAPTIVE_EXAMPLES",
    "ADAPTIVE_PRESETS",
    "ARCHS",
    "ATTENTION_KINDS",
    "DEFAULT_FIXED_LAGS",
    "HASH_NEUTRAL",
    "hash_payload",
    "INPUT_KINDS",
    "KERNEL_FORMS",
    "LEGACY_TASK",
    "READOUT_KINDS",
    "RPE_TYPES",
    "SEED_MAX",
    "SIGNED_RPE_TYPES",
    "TASK_ADAPTER",
    "TASK_CONFIGS",
    "TASK_KINDS",
    "TMX_RPE_TYPES",
    "AdaptiveTaskConfig",
    "Bool",
    "ConfigError",
    "FieldError",
    "FixedTaskConfig",
    "Float",
    "InputConfig",
    "Int",
    "KernelTaskConfig",
    "ModelConfig",
    "ReadoutConfig",
    "RunConfig",
    "Strict",
    "TaskConfig",
    "TextTaskConfig",
    "TrainConfig",
    "unique_by_hash",
    "apply_overrides",
    "catalogue",
    "kind_shorthand",
    "listify",
    "load_yaml",
    "parse_kernel",
    "parse_yaml",
    "table_key",
    "task_config",
    "validate_config",
]
