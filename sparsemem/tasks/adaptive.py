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

import torch

from ..config import table_key
from .base import Task, gather_lagged


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
                table = torch.randint(1, T_i + 1, (S**a,), generator=gen) if T_i >= 1 else torch.zeros(S**a, dtype=torch.long)
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
