"""Target families (docs/tasks.md): one module each."""

from __future__ import annotations

from ..registry import TASKS as NAMES
from .adaptive import AdaptiveTask, AdaptiveTaskConfig
from .base import Task
from .fixed import FixedTask, FixedTaskConfig
from .kernel import KernelTask, KernelTaskConfig, kernel_values
from .text import TextTask, TextTaskConfig

# Each target family bound once: its name (described in the registry) to its schema and its generator.
FAMILIES = {
    "fixed": (FixedTaskConfig, FixedTask),
    "adaptive": (AdaptiveTaskConfig, AdaptiveTask),
    "kernel": (KernelTaskConfig, KernelTask),
    "text": (TextTaskConfig, TextTask),
}
if set(FAMILIES) != set(NAMES):  # pragma: no cover - a family added in one place only
    raise ImportError(f"task families {sorted(FAMILIES)} differ from the registry's {sorted(NAMES)}")
TASKS = {kind: task for kind, (_, task) in FAMILIES.items()}
TASK_CONFIGS = {kind: schema for kind, (schema, _) in FAMILIES.items()}


def make_task(cfg) -> Task:
    """Build the task a config (one of the family schemas) describes."""
    return TASKS[cfg.kind](cfg)


__all__ = [
    "Task",
    "FixedTask",
    "AdaptiveTask",
    "KernelTask",
    "TextTask",
    "FAMILIES",
    "TASKS",
    "TASK_CONFIGS",
    "make_task",
    "kernel_values",
]
