"""Task I: fixed, long but M-sparse memory, y_t = f(x_{t-T_1}, ..., x_{t-T_M}).

A lag of 0 stands for x_t itself; positions before the start are 0.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from ..fields import FieldError, Int, listify
from .base import ReadoutTaskConfig, Task, check_lags, gather_lagged

DEFAULT_LAGS = (1, 8)  # a fixed task's lags when none are given: y = f(x_{t-1}, x_{t-8})


class FixedTaskConfig(ReadoutTaskConfig):
    """Task I: the lags T_1..T_M (0 means x_t itself) and the readout f."""

    kind: Literal["fixed"] = "fixed"
    lags: list[Int] = Field(default_factory=list)

    _norm_lags = field_validator("lags", mode="before")(listify)

    @model_validator(mode="before")
    @classmethod
    def _default_lags(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lags" not in data:  # the default task is a valid one
            T = data.get("seq_len", 64)
            T = T if isinstance(T, int) and not isinstance(T, bool) else 64
            data = {**data, "lags": [lag for lag in DEFAULT_LAGS if lag < T] or [0]}
        return data

    @model_validator(mode="after")
    def _check(self) -> "FixedTaskConfig":
        if not self.lags:
            raise FieldError("lags", self.lags, "a fixed task needs a non-empty list of lags")
        check_lags(self)
        self._check_readout()
        return self

    def memory_size(self) -> int:
        return len(self.lags) * self.dim


class FixedTask(Task):
    def target(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.query_positions(x.device)
        lags = torch.tensor(self.cfg.lags, device=x.device)
        z = gather_lagged(x, pos[:, None] - lags[None, :])  # (B, Tq, M, d)
        return self._finish(self.readout(z.flatten(-2)))
