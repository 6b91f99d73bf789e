"""Optimal-fit floors that an experiment sets beside its trained cells.

They are computed when the experiment runs (``sparsemem reproduce``) and kept
in the store's ``computed`` table, so ``sparsemem report`` only reads them.
Two quantities, both from ``sparsemem.theory.fit`` (a greedy search over p
with joint refinement: the best fit it finds, an upper bound on the exact
optimum):

- ``kernel``: the MSE floor of H DP-free heads with a linear readout fitting
  the target kernel (``power:0.5``, ``exp:5``, ``deltas:952+944+901``);
- ``extraction``: for target ``lags:952+944+901``, the mean over the lags of
  the squared error of reading each lag's token from H shared heads, each with
  its own linear weights: 0 when every token is read exactly, 1 when none is;
- ``linear``: for target ``task:{JSON of a task config}``, the relative MSE of
  the best linear predictor of y from the whole window (theory/linear.py), the
  floor of every DP-free model read linearly; its rpe is ``any`` and H = 1.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass

# RPE labels with a fixed kernel shape: (RPE type, p free in sign). "±" marks model.rpe_sign = free.
FIT_LABELS = {"lin": ("lin", False), "log": ("log", False), "lin±": ("lin", True), "log±": ("log", True)}


@dataclass(frozen=True)
class FloorSpec:
    quantity: str  # "kernel", "extraction" or "linear"
    target: str  # a kernel spec, "lags:T1+T2+..." for extraction, "task:{...}" for linear
    rpe: str  # a key of FIT_LABELS ("any" for linear)
    max_heads: int  # floors for H = 1..max_heads
    seq_len: int

    def __post_init__(self):
        if self.quantity not in ("kernel", "extraction", "linear"):
            raise ValueError(f"floor quantity {self.quantity!r}: kernel, extraction or linear")
        if self.rpe not in FIT_LABELS and not (self.quantity == "linear" and self.rpe == "any"):
            raise ValueError(f"floor rpe {self.rpe!r}: one of {', '.join(FIT_LABELS)}")


def linear_spec(task: dict) -> FloorSpec:
    """The linear-predictor floor of a task (given as a config dict)."""
    return FloorSpec("linear", task_target(task), "any", 1, task["seq_len"])


def task_target(task: dict) -> str:
    return "task:" + json.dumps(task, sort_keys=True)


def lags_target(lags) -> str:
    return "lags:" + "+".join(str(int(t)) for t in lags)


@functools.lru_cache(maxsize=None)
def floor_values(spec: FloorSpec) -> tuple[float, ...]:
    """The floors for H = 1..spec.max_heads."""
    from ..theory.fit import extraction_floors, fit_heads, target_kernel

    if spec.quantity == "linear":
        from ..config import task_config
        from ..theory.linear import linear_floor

        return (linear_floor(task_config(json.loads(spec.target.removeprefix("task:"))))["rel"],)
    kind, signed = FIT_LABELS[spec.rpe]
    if spec.quantity == "kernel":
        fits = fit_heads(target_kernel(spec.target, spec.seq_len), kind, spec.max_heads, signed=signed)
        return tuple(f.l2 for f in fits)
    lags = [int(t) for t in spec.target.removeprefix("lags:").split("+")]
    return tuple(extraction_floors(lags, spec.seq_len, kind, spec.max_heads, signed))


def missing(specs: list[FloorSpec], have: list[dict]) -> list[FloorSpec]:
    """The specs whose floors the stored computed rows ``have`` do not hold yet."""
    keys = {(r["quantity"], r["target"], r["rpe"], r["heads"]) for r in have}
    return [s for s in specs if any((s.quantity, s.target, s.rpe, H) not in keys for H in range(1, s.max_heads + 1))]


def compute_rows(specs: list[FloorSpec], progress: bool = False) -> list[tuple]:
    """(quantity, target, rpe, heads, value) rows for the store."""
    rows = []
    for s in specs:
        if progress:
            print(f"sparsemem: fitting {s.rpe} heads to {s.target} ({s.quantity}, H <= {s.max_heads})", file=sys.stderr)
        rows += [(s.quantity, s.target, s.rpe, H, v) for H, v in enumerate(floor_values(s), 1)]
    return rows
