"""Target families (PAPER.md section 3): one module each."""

from __future__ import annotations

from .adaptive import AdaptiveTask
from .base import Task
from .fixed import FixedTask
from .kernel import KernelTask, kernel_values
from .text import TextTask

TASKS = {"fixed": FixedTask, "adaptive": AdaptiveTask, "kernel": KernelTask, "text": TextTask}


def make_task(cfg) -> Task:
    """Build the task a config (one of the family schemas) describes."""
    return TASKS[cfg.kind](cfg)


__all__ = ["Task", "FixedTask", "AdaptiveTask", "KernelTask", "TextTask", "TASKS", "make_task", "kernel_values"]
