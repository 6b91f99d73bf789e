"""2a's readout f(x_99) = sum_k relu(w_k x_99), w_k ~ N(0, 1) drawn by the task seed, on the two token laws.

f(x) = A relu(x) + B relu(-x) with A = f(1) = sum_k relu(w_k) and B = f(-1) = sum_k relu(-w_k). On
Boolean tokens f takes the two values A and B, so it is affine in x_99. On tokens uniform on [-1, 1] the
best affine fit of f is ((A - B) / 2) x + ((A + B) / 2) E|x|, and what it leaves is the non-affine share
of Var(y),

    ((A + B)^2 / 48) / ((A + B)^2 / 48 + (A - B)^2 / 12) = (A + B)^2 / ((A + B)^2 + 4 (A - B)^2)

(Var |x| = 1/12 and Var x = 1/3, uncorrelated): the relative MSE of a model whose readout ends affine in
the token, whatever it extracts.
"""

from __future__ import annotations

import torch


def two_values(task: dict) -> tuple[float, float]:
    """(f(+1), f(-1)) of a one-lag relu_net task (a task config as a dict, as a store keeps it; the readout
    alone is rebuilt, the way the task draws it from task.seed, so older stores' task schemas read too)."""
    from ..tasks.readouts import Readout, ReadoutConfig

    f = Readout(ReadoutConfig(**task["readout"]), len(task["lags"]), seed=task.get("seed", 0))
    out = f(torch.tensor([[1.0], [-1.0]], dtype=torch.float64))
    return float(out[0]), float(out[1])


def nonaffine_share(task: dict) -> float:
    """The relative MSE left by the best affine readout of f on tokens uniform on [-1, 1]."""
    a, b = two_values(task)
    return (a + b) ** 2 / ((a + b) ** 2 + 4 * (a - b) ** 2)
