"""The best linear predictor of a target: the floor of every DP-free model read linearly.

A 1-layer DP-free FFN-free model computes y_hat_t = sum_s K(s) x_{t-s} + b: a
linear filter of the past (Prop 4.2's DP-free class). No choice of heads or
RPE does better than the best linear predictor of y from (x_t, ..., x_{t-T+1}),
which ``linear_floor`` estimates by least squares on one sample and scores on
another (so it is not biased low by overfitting).
"""

from __future__ import annotations

import torch

from ..config import TaskConfig
from ..tasks import make_task


def linear_floor(task_cfg: TaskConfig, samples: int = 100_000, seed: int = 0) -> dict:
    """{"mse", "rel"}: the held-out MSE of the least-squares linear predictor, and over Var(y)."""
    cfg = task_cfg.model_copy(update={"output": "last"})
    task = make_task(cfg)
    gen = torch.Generator().manual_seed(seed)

    def design(n):
        x, y = task.sample(n, gen, torch.float64)
        feats = torch.cat([x.flatten(1), torch.ones(n, 1, dtype=torch.float64)], 1)
        return feats, y

    a, y = design(samples)
    coef = torch.linalg.lstsq(a, y[:, None]).solution[:, 0]
    b, y2 = design(samples)
    mse = float(((b @ coef - y2) ** 2).mean())
    var = float(y2.var(unbiased=False))
    return {"mse": mse, "rel": mse / var if var > 0 else None}
