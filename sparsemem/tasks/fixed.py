"""Task I: fixed, long but M-sparse memory, y_t = f(x_{t-T_1}, ..., x_{t-T_M}).

A lag of 0 stands for x_t itself; positions before the start are 0.
"""

from __future__ import annotations

import torch

from .base import Task, gather_lagged


class FixedTask(Task):
    def target(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.query_positions(x.device)
        lags = torch.tensor(self.cfg.lags, device=x.device)
        z = gather_lagged(x, pos[:, None] - lags[None, :])  # (B, Tq, M, d)
        return self._finish(self.readout(z.flatten(-2)))
