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
  floor of every DP-free model read linearly; its rpe is ``any`` and H = 1;
- ``width``: for target ``readout:{JSON of a one-token task's input law, readout
  and seed}``, the relative MSE of the best fit found of the readout by m ReLU
  units given its token exactly (theory/width.py); its rpe is ``any`` and the
  store's ``heads`` column holds m, for each m of ``sizes``.
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
    quantity: str  # "kernel", "extraction", "linear" or "width"
    target: str  # a kernel spec, "lags:T1+T2+..." for extraction, "task:{...}" for linear, "readout:{...}"
    rpe: str  # a key of FIT_LABELS ("any" for linear and width)
    max_heads: int  # floors for H = 1..max_heads
    seq_len: int
    sizes: tuple = ()  # width: the FFN widths m (max_heads unused)

    def __post_init__(self):
        if self.quantity not in ("kernel", "extraction", "linear", "width"):
            raise ValueError(f"floor quantity {self.quantity!r}: kernel, extraction, linear or width")
        if self.rpe not in FIT_LABELS and not (self.quantity in ("linear", "width") and self.rpe == "any"):
            raise ValueError(f"floor rpe {self.rpe!r}: one of {', '.join(FIT_LABELS)}")
        if (self.quantity == "width") != bool(self.sizes):
            raise ValueError("a width floor needs its sizes (FFN widths), and only a width floor has sizes")

    def fits(self) -> bool:
        """Whether every lag the target names lies inside seq_len (an override of the length or the lags can
        leave a floor's lags outside it: that floor is not computed)."""
        for prefix in ("lags:", "deltas:"):
            if self.target.startswith(prefix):
                return all(int(t) < self.seq_len for t in self.target.removeprefix(prefix).split("+"))
        return True

    def indices(self) -> tuple:
        """The H (or, for width, the m) of each floor, in the order floor_values returns them."""
        return tuple(self.sizes) or tuple(range(1, self.max_heads + 1))


def linear_spec(task: dict) -> FloorSpec:
    """The linear-predictor floor of a task (given as a config dict)."""
    return FloorSpec("linear", task_target(task), "any", 1, task["seq_len"])


def task_target(task: dict) -> str:
    return "task:" + json.dumps(task, sort_keys=True)


def width_spec(task: dict, sizes) -> FloorSpec:
    """The width floors of a one-token task's readout (a task config as a dict) at the FFN widths ``sizes``."""
    return FloorSpec("width", readout_target(task), "any", max(sizes), 1, tuple(sizes))


def readout_target(task: dict) -> str:
    """What a width floor depends on: the token law, the readout and the task seed (schema-normalized, so a
    spec's shorthand and a stored row's full config name the same floor)."""
    law = {k: task[k] for k in ("input", "readout", "seed") if k in task}
    full = _one_token(law).model_dump(mode="json")
    return "readout:" + json.dumps({k: full[k] for k in ("input", "readout", "seed")}, sort_keys=True)


def _one_token(law: dict):
    """A fixed task of one token (lag 0, d = 1) with this token law, readout and seed."""
    from ..config import task_config

    return task_config({"kind": "fixed", "lags": [0], "seq_len": 1, "dim": 1, **law})


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
    if spec.quantity == "width":
        from ..tasks import make_task
        from ..theory.width import width_floors

        task = make_task(_one_token(json.loads(spec.target.removeprefix("readout:"))))
        return tuple(width_floors(task, spec.sizes).values())
    kind, signed = FIT_LABELS[spec.rpe]
    if spec.quantity == "kernel":
        fits = fit_heads(target_kernel(spec.target, spec.seq_len), kind, spec.max_heads, signed=signed)
        return tuple(f.l2 for f in fits)
    lags = [int(t) for t in spec.target.removeprefix("lags:").split("+")]
    return tuple(extraction_floors(lags, spec.seq_len, kind, spec.max_heads, signed))


def missing(specs: list[FloorSpec], have: list[dict]) -> list[FloorSpec]:
    """The specs whose floors the stored computed rows ``have`` do not hold yet."""
    keys = {(r["quantity"], r["target"], r["rpe"], r["heads"]) for r in have}
    return [s for s in specs if any((s.quantity, s.target, s.rpe, H) not in keys for H in s.indices())]


def compute_rows(specs: list[FloorSpec], progress: bool = False) -> list[tuple]:
    """(quantity, target, rpe, heads, value) rows for the store."""
    rows = []
    for s in specs:
        if progress:
            what = (
                f"m ReLU units to {s.target} (width, m in {list(s.sizes)})"
                if s.sizes
                else f"{s.rpe} heads to {s.target} ({s.quantity}, H <= {s.max_heads})"
            )
            print(f"sparsemem: fitting {what}", file=sys.stderr)
        rows += [(s.quantity, s.target, s.rpe, H, v) for H, v in zip(s.indices(), floor_values(s))]
    return rows
