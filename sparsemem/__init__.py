"""sparsemem: the Transformer of Wang and E (NeurIPS 2024) on long, sparse memory."""

from .config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig
from .models import make_model
from .tasks import make_task

__version__ = "0.1.0"

__all__ = ["ConfigError", "ModelConfig", "RunConfig", "TaskConfig", "TrainConfig",
           "make_model", "make_task", "train", "__version__"]


def train(cfg, **kwargs):
    """Train one run; see :func:`sparsemem.train.train`."""
    from .train import train as _train

    return _train(cfg, **kwargs)
