"""Oracle floors of a nested (Task II) target for one layer of heads that each read one lag exactly.

A 1-layer model whose H heads each read the token at one lag exactly, followed by the best readout (the
conditional mean of y given what was read), is the limit of a DP-free layer with sharp kernels. Its error
is the *fixed-lag oracle floor*: the least E[(y - E[y | x_t, x_{t-s}, s in S])^2] over lag sets S of at
most H lags (lag 0 comes free through the residual). A normalization-free layer whose heads a token gate
switches on or off by x_t (Thm 4.1's mechanism, Prop 4.3's TMX heads) may pick its set S per value of x_t:
the *gated oracle floor*. Neither reads one memory's token to choose where the next is, which a second
layer does (Thm 4.4).

Tokens are i.i.d. uniform over the task's values and the output is read at the last position, so both
floors are exact averages over every token assignment at the lags the tables can reach; the lag sets are
searched exhaustively where the combinations are few, else by greedy growth and single swaps (then the
floor reported is the best set found: an upper bound on the oracle's optimum).
"""

from __future__ import annotations

import itertools
import math
from typing import Optional

import numpy as np
import torch

from ..config import ConfigError, TaskConfig
from ..tasks import make_task

EXHAUSTIVE_LIMIT = 200_000  # lag sets searched one by one up to this many
ENUMERATION_LIMIT = 2_000_000  # token assignments per value of x_t


def reachable_lags(task, v: int) -> list[int]:
    """The lags >= 1 (inside the sequence) that the tables can send memories to when x_t is value index v."""
    cfg, S, T = task.cfg, len(task.symbols), task.cfg.seq_len
    found: set[int] = set()

    def walk(i: int, args: list[int], tokens: dict[int, int]) -> None:
        if i == len(task.tables):
            return
        code = 0
        for a in args[: cfg.g_arity(i)]:
            code = code * S + a
        lag = int(task.tables[i][code])
        if lag == 0 or lag in tokens:  # x_t itself, or a token this walk has already fixed
            walk(i + 1, args + [v if lag == 0 else tokens[lag]], tokens)
            return
        if lag >= T:  # before the start: the pad, a known symbol
            walk(i + 1, args + [task.pad], tokens)
            return
        found.add(lag)
        for sym in range(len(task.values)):
            walk(i + 1, args + [sym], {**tokens, lag: sym})

    walk(0, [v], {})
    return sorted(found)


def _errors_by_subset(task, v: int, lags: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """y over every token assignment at `lags` (x_t = value v) and, per subset A of `lags` (bit mask),
    the summed squared error of predicting y by its mean given the tokens at A."""
    V, T, n = len(task.values), task.cfg.seq_len, len(lags)
    if V**n > ENUMERATION_LIMIT:
        raise ConfigError(
            f"the oracle floor enumerates {V}^{n} token assignments for one value of x_t; at most "
            f"{ENUMERATION_LIMIT} are allowed (fewer token values or lag bounds)"
        )
    assign = np.array(list(itertools.product(range(V), repeat=n)), dtype=np.int64).reshape(-1, n)
    values = torch.tensor(task.values, dtype=torch.float64)
    x = torch.full((len(assign), T, 1), float(task.values[0]), dtype=torch.float64)
    x[:, T - 1, 0] = values[v]
    for j, lag in enumerate(lags):
        x[:, T - 1 - lag, 0] = values[torch.from_numpy(assign[:, j])]
    y = task.target(x).numpy()
    err = np.empty(2**n)
    for mask in range(2**n):
        cols = [j for j in range(n) if mask >> j & 1]
        code = np.zeros(len(assign), dtype=np.int64)
        for j in cols:
            code = code * V + assign[:, j]
        sums, counts = np.bincount(code, y), np.bincount(code)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        err[mask] = float(((y - means[code]) ** 2).sum())
    return y, err


def _mask(lags: list[int], chosen) -> int:
    return sum(1 << j for j, lag in enumerate(lags) if lag in chosen)


def oracle_floors(task_cfg: TaskConfig, heads: list[int]) -> dict:
    """Fixed-lag and gated oracle floors (relative MSE) of an adaptive task read at the last position, per
    head count; with the candidate lags (every lag >= 1 a memory can take) and whether each fixed-lag
    search was exhaustive."""
    if task_cfg.kind != "adaptive" or task_cfg.output != "last":
        raise ConfigError("oracle floors need an adaptive task read at the last position (task.output=last)")
    task = make_task(task_cfg)
    V = len(task.values)
    per_v = []
    for v in range(V):
        lags = reachable_lags(task, v)
        y, err = _errors_by_subset(task, v, lags)
        per_v.append((lags, y, err))
    weights = [1.0 / (V * len(y)) for _, y, _ in per_v]  # x_t uniform; assignments uniform given x_t
    mean = sum(w * y.sum() for w, (_, y, _) in zip(weights, per_v))
    var = sum(w * ((y - mean) ** 2).sum() for w, (_, y, _) in zip(weights, per_v))
    candidates = sorted(set().union(*(set(lags) for lags, _, _ in per_v)))

    def fixed_error(chosen) -> float:
        return sum(w * err[_mask(lags, chosen)] for w, (lags, _, err) in zip(weights, per_v))

    out = {"candidate_lags": candidates, "var": float(var), "fixed": {}, "gated": {}, "exhaustive": {}}
    for H in heads:
        gated = sum(
            w * min(err[m] for m in range(len(err)) if bin(m).count("1") <= H) for w, (_, _, err) in zip(weights, per_v)
        )
        best, exhaustive = _best_lag_set(candidates, H, fixed_error)
        out["fixed"][str(H)] = {"rel": _rel(fixed_error(best), var), "lags": sorted(best)}
        out["gated"][str(H)] = _rel(gated, var)
        out["exhaustive"][str(H)] = exhaustive
    return out


def _rel(mse: float, var: float) -> Optional[float]:
    return max(0.0, mse) / var if var > 0 else None


def _best_lag_set(candidates: list[int], H: int, error) -> tuple[set, bool]:
    """The lag set of at most H candidates with the least error: every set where they are few, else greedy
    growth refined by single swaps (best found)."""
    if len(candidates) <= H:
        return set(candidates), True
    if math.comb(len(candidates), H) <= EXHAUSTIVE_LIMIT:
        return set(min(itertools.combinations(candidates, H), key=error)), True
    chosen: set = set()
    while len(chosen) < H:
        chosen.add(min((c for c in candidates if c not in chosen), key=lambda c: error(chosen | {c})))
    improved = True
    while improved:
        improved, now = False, error(chosen)
        for out_lag, in_lag in itertools.product(sorted(chosen), [c for c in candidates if c not in chosen]):
            trial = (chosen - {out_lag}) | {in_lag}
            if error(trial) < now - 1e-15:
                chosen, improved = trial, True
                break
    return chosen, False
