"""sparsemem: the Transformer of Wang and E (NeurIPS 2024) on long, sparse memory.

import sparsemem as sm
cfg = sm.RunConfig.from_yaml("sparsemem/examples/kernel_power.yaml", overrides=["model.heads=4"])
task = sm.make_task(cfg.task)            # task.sample(batch, generator) -> (x, y)
model = sm.make_model(cfg.model, task)   # x (B, T, d) -> y (B,) or (B, T)
result = sm.train(cfg)                   # the code path of `sparsemem train`
results = sm.train_fleet([cfg_a, cfg_b]) # several runs as one batched model, one result each
df = sm.load_results("results/results.db")   # one row per run, dotted config columns (pandas)
"""

from .config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from .frames import export, load_curves, load_results  # pandas is imported when they are called
from .models import make_model
from .reproduce import reproduce
from .tasks import make_task
from .training import train, train_fleet

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "export",
    "load_curves",
    "load_results",
    "make_model",
    "make_task",
    "reproduce",
    "train",
    "train_fleet",
    "__version__",
]
