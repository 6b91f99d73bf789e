"""Sweeps: grid expansion, the SQLite results store, local and Ray runners."""

from .executors import run_one
from .runner import run_spec, run_sweep
from .spec import SweepSpec, load_spec
from .store import Store

__all__ = ["Store", "SweepSpec", "load_spec", "run_one", "run_spec", "run_sweep"]
