"""Training: one run (``single.py``) or K runs as one fleet (``fleet.py``), through one loop (``loop.py``)
and one record of each run (``record.py``); what both share in ``basics.py``."""

from __future__ import annotations

from .basics import DATA_SEED_OFFSET, DTYPES, RunResult, evaluate, keep_freed_memory, lr_factor, resolve_device
from .fleet import FLEET_SHARED_TRAIN, evaluate_fleet, fleet_key, train_fleet
from .fleet_adamw import FleetAdamW
from .single import train

__all__ = [
    "DATA_SEED_OFFSET",
    "DTYPES",
    "FLEET_SHARED_TRAIN",
    "FleetAdamW",
    "RunResult",
    "evaluate",
    "evaluate_fleet",
    "fleet_key",
    "keep_freed_memory",
    "lr_factor",
    "resolve_device",
    "train",
    "train_fleet",
]
