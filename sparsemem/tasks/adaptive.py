"""Task II: K-adaptive, long but M-sparse memory.

y_t = f(x_t, x_{t-t_1}, ..., x_{t-t_M}) with nested, token-dependent lags
t_i = g_i(x_t, x_{t-t_1}, ..., x_{t-t_{min(i-1, K)}}), each in [0, T_i].
Tokens are discrete. Each g_i is a table over its argument tuples, keyed by the
comma-joined values (``"1,-1"``), given in the config or drawn at random
(seeded by task.seed) into [1, T_i].

Positions before the start hold the value 0. When 0 is not a token value it
is an extra symbol for the tables: a given table maps any tuple holding it to
lag 0, a random table draws a lag for it like for any other tuple.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator, model_validator

from ..fields import FieldError, Int, listify
from .base import ReadoutTaskConfig, Task, check_lags, gather_lagged

_NESTED_G = [
    {"1": 1, "-1": 2},
    {"1,1": 1, "1,-1": 2, "-1,1": 1, "-1,-1": 2},
]
ADAPTIVE_PRESETS: dict[str, dict[str, Any]] = {
    # y_t = x_t x_{t-g(x_t)} x_{t-g(x_{t-g(x_t)})}, g(1) = 1, g(-1) = 2 (K = M = 2).
    "nested_product": {
        "input": "rademacher",
        "lags": [2, 2],
        "depth": 2,
        "g": _NESTED_G,
        "readout": "product",
    },
    # Prop 4.2: y_t = x_{t-g(x_t)}, x in {-1, 0, 1}, g(-1) = 0, g(0) = 1, g(1) = 2.
    "prop42": {
        "input": {"kind": "discrete", "values": [-1, 0, 1]},
        "lags": [2],
        "depth": 0,
        "g": [{"-1": 0, "0": 1, "1": 2}],
        "readout": {"kind": "linear", "weights": [0, 1]},
    },
}


def _format_value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def table_key(values: tuple[float, ...]) -> str:
    """The key of a g-table entry for these argument values, e.g. ``"1,-1"``."""
    return ",".join(_format_value(v) for v in values)


ADAPTIVE_EXAMPLES = tuple(ADAPTIVE_PRESETS)


class AdaptiveTaskConfig(ReadoutTaskConfig):
    """Task II: the bounds T_i of the lags t_i = g_i(...) in [0, T_i], the nesting depth K and the tables g."""

    kind: Literal["adaptive"] = "adaptive"
    lags: list[Int] = Field(default_factory=list)
    depth: Int = Field(0, ge=0)  # K, the nesting depth
    g: Optional[list[dict[str, Int]]] = None  # lag tables; None: random
    example: Optional[Literal[ADAPTIVE_EXAMPLES]] = None

    _norm_lags = field_validator("lags", mode="before")(listify)

    @model_validator(mode="before")
    @classmethod
    def _apply_example(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("example") is not None:
            preset = ADAPTIVE_PRESETS.get(data["example"])
            if preset is not None:
                data = {**preset, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> "AdaptiveTaskConfig":
        self._check_adaptive()
        self._check_readout()
        return self

    def _check_adaptive(self) -> None:
        vals = self.input.value_set()
        if vals is None:
            raise FieldError("input", self.input.kind, "an adaptive task needs discrete tokens: rademacher or discrete")
        if self.dim != 1:
            raise FieldError("dim", self.dim, "an adaptive task needs dim 1")
        if not self.lags:
            raise FieldError("lags", self.lags, "an adaptive task needs the bounds T_i of its lags")
        check_lags(self)
        if self.depth > len(self.lags):
            raise FieldError("depth", self.depth, f"depth must be at most the number of memories, {len(self.lags)}")
        if self.g is None:
            return
        if len(self.g) != len(self.lags):
            raise FieldError("g", f"{len(self.g)} tables", f"g needs one table per lag bound, {len(self.lags)}")
        for i, table in enumerate(self.g):
            nargs = self.g_arity(i)
            for args in itertools.product(vals, repeat=nargs):
                key = table_key(args)
                if key not in table:
                    raise FieldError(
                        f"g.{i}",
                        key,
                        f"table lacks this key; it needs every tuple of {nargs} comma-separated token values",
                    )
            for key, lag in table.items():
                if not 0 <= lag <= self.lags[i]:
                    raise FieldError(f"g.{i}.{key}", lag, f"a lag of memory {i + 1} must be in [0, {self.lags[i]}]")

    def g_arity(self, i: int) -> int:
        """Number of arguments of g_{i+1}: x_t and the first min(i, K) memories."""
        return 1 + min(i, self.depth)

    def memory_size(self) -> int:
        return 1 + len(self.lags)  # (x_t, x_{t-t_1}, ..., x_{t-t_M})


class AdaptiveTask(Task):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.values = cfg.input.value_set()
        V = len(self.values)
        if 0.0 in self.values:
            self.pad = self.values.index(0.0)
            self.symbols = list(self.values)
        else:
            self.pad = V
            self.symbols = list(self.values) + [0.0]
        S = len(self.symbols)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.tables = []  # tables[i][code] = lag t_{i+1}; code = mixed-radix index of the arguments
        for i, T_i in enumerate(cfg.lags):
            a = cfg.g_arity(i)
            if cfg.g is None:
                table = (
                    torch.randint(1, T_i + 1, (S**a,), generator=gen)
                    if T_i >= 1
                    else torch.zeros(S**a, dtype=torch.long)
                )
            else:
                table = torch.zeros(S**a, dtype=torch.long)
                for code, args in enumerate(itertools.product(range(S), repeat=a)):
                    key = table_key(tuple(self.symbols[j] for j in args))
                    table[code] = cfg.g[i].get(key, 0)
            self.tables.append(table)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Symbol index of each token: x (B, T, 1) -> (B, T)."""
        vals = torch.tensor(self.values, dtype=x.dtype, device=x.device)
        return (x[..., 0, None] - vals).abs().argmin(-1)

    def lags(self, x: torch.Tensor) -> torch.Tensor:
        """The lags (t_1, ..., t_M) at every query position: (B, Tq, M)."""
        return self._walk(x)[0]

    def _walk(self, x: torch.Tensor):
        B, T, _ = x.shape
        S = len(self.symbols)
        tok = self.tokens(x)
        pos = self.query_positions(x.device).expand(B, -1)  # (B, Tq)

        def symbol_at(p):
            return torch.where(p >= 0, torch.gather(tok, 1, p.clamp(min=0)), torch.full_like(p, self.pad))

        arg_symbols = [symbol_at(pos)]
        values = [gather_lagged(x, pos, batched=True)[..., 0]]
        lags = []
        for i, table in enumerate(self.tables):
            a = self.cfg.g_arity(i)
            code = torch.zeros_like(pos)
            for sym in arg_symbols[:a]:
                code = code * S + sym
            lag = table.to(x.device)[code]
            p = pos - lag
            lags.append(lag)
            arg_symbols.append(symbol_at(p))
            values.append(gather_lagged(x, p, batched=True)[..., 0])
        return torch.stack(lags, -1), torch.stack(values, -1)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        _, z = self._walk(x)  # z = (x_t, x_{t-t_1}, ..., x_{t-t_M}): (B, Tq, M+1)
        return self._finish(self.readout(z))
