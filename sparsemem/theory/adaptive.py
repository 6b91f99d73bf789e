"""Explicit constructions for Task II with discrete tokens (Thm 4.1, K = 0; Prop 4.2; Thm 4.4,
K >= 1; Prop 4.3 with TMX heads).

y_t = f(x_t, x_{t-t_1}, ..., x_{t-t_M}), t_i = g_i(x_t, x_{t-t_1}, ..., x_{t-t_min(i-1,K)}). The model is
normalization-free with DP (or TMX) gates; coordinate 0 holds x_t, coordinate 1 the constant 1, and
memory i lands in coordinate 2 + i. Layer k (k = 1..K) builds memory k, layer K + 1 every later memory,
so the model has min(M, K + 1) layers (Thm 4.4's count without its FFN layer).

A head for memory i, lag value l and gate j has the query sum_r B_{r,j_r} u_r over g_i's arguments u =
(x_t, memory 1, ...) read from the residual stream, against a constant key, so its weight is
prod_r exp(B_{r,j_r} u_r) times its RPE kernel. Over j the gates interpolate 1{g_i(u) = l} exactly on the
argument grid (a Kronecker-Vandermonde solve). The RPE kernel makes the delta at lag l:

- ``lin`` (the theorem's RPE): `heads` lin heads fitted to the delta without the residual (fit.py). A
  sum of exponentials isolates a lag only roughly: at T = 32 the best 8-head fit of the delta at lag 8 or
  beyond still has l1 error near 2, so such a memory is far from its token.
- ``learned`` (a bias per distance, outside the paper's family, the RPE of the 1a models): one head per
  lag whose bias is 0 at l and -60 elsewhere, exact to e^-60 per lag.

Off the argument grid the Vandermonde gates are not bounded (an imprecise memory 1 drove memory 2 to
1e8 in a lin probe). Where the model has hidden FFNs wide enough, the FFN after the layer that builds a
memory snaps it onto the symbol grid (a ReLU staircase, exact within 7/16 of the smallest gap between
symbols): the role the paper's precision assumption plays. Values read coordinate 0, which no layer
changes, at t - s. The readout is fitted to f as in ``construct.construct``.
"""

from __future__ import annotations

import functools

import torch

from ..config import ConfigError, ModelConfig
from ..models import make_model
from ..tasks import make_task
from .construct import fit_readout, score
from .fit import fit_heads

ADAPTIVE_ATTENTION = ("dp", "tmx")
ADAPTIVE_RPES = ("lin", "learned")
OFF = 60.0  # learned RPE: bias at the lags a head does not read (weight e^-60)


def construct_adaptive(
    cfg, heads: int, width: int = 0, samples: int = 20_000, seed: int = 0, attention: str = "dp"
) -> tuple:
    """Build the construction for cfg's adaptive task (RPE: cfg.model.rpe, lin or learned) with `heads`
    lin heads per lag (learned: one exact head per lag) and readout width `width`. Returns (model, info)."""
    rpe = cfg.model.rpe
    if attention not in ADAPTIVE_ATTENTION:
        raise ConfigError(
            f"attention {attention!r}: the adaptive construction is built with {' or '.join(ADAPTIVE_ATTENTION)}"
        )
    if rpe not in ADAPTIVE_RPES:
        raise ConfigError(
            f"model.rpe = {rpe!r}: the adaptive construction is built with {' or '.join(ADAPTIVE_RPES)} RPE"
        )
    if attention == "tmx" and rpe != "lin":
        raise ConfigError("attention tmx: its gates ride on lin RPE's phi (Prop 4.3); use model.rpe=lin")
    tc = cfg.task
    if tc.kind != "adaptive" or tc.output != "last":
        raise ConfigError(
            "the adaptive construction needs an adaptive task read at the last position "
            "(task.kind=adaptive, task.output=last)"
        )
    task = make_task(tc)
    T, M = tc.seq_len, len(tc.lags)
    values = torch.tensor(task.values, dtype=torch.float64)  # x_t at the query is a token, never the pad
    symbols = torch.tensor(task.symbols, dtype=torch.float64)  # a memory can be the pad 0 before the start

    plan = _adaptive_plan(task, tc, values, symbols)
    lags = sorted({l for _, _, l, *_ in plan})
    kernels = {l: _lag_heads(rpe, l, heads, T) for l in lags}
    layers = 1 + max(stage for stage, *_ in plan)
    per_layer = [sum(len(beta) * len(kernels[l]) for st, _, l, _, _, beta in plan if st == k) for k in range(layers)]
    mcfg = ModelConfig(
        layers=layers,
        heads=max(per_layer),
        head_dim=1,
        dim=2 + M,
        ffn_width=width,
        attention=attention,
        normalize=False,
        rpe=rpe,
        rpe_max_distance=T,
        scale=False,
    )
    model = make_model(mcfg, task).double()
    _set_adaptive_weights(model, plan, kernels, layers, T, attention)
    snapped = _snap_memories(model, plan, layers, symbols)
    mz = torch.zeros(1 + M, 2 + M, dtype=torch.float64)  # z = (x_t, memory 1, ..., memory M)
    mz[0, 0] = 1.0
    for i in range(M):
        mz[1 + i, 2 + i] = 1.0
    fit_readout(model, task, mz, width, samples, seed)
    return model, {
        **score(model, task, cfg),
        "rpe": rpe,
        "kernel_l1": {str(l): _kernel_l1(k, l, T) for l, k in kernels.items()},
        "heads_total": sum(per_layer),
        "heads_per_layer": per_layer,
        "layers": layers,
        "snapped": snapped,
        "params": model.num_params(),
        "attention_params": sum(p.numel() for a in model.attn for p in a.parameters()),
        "model_config": mcfg.model_dump(mode="json"),
    }


def _lag_heads(rpe: str, lag: int, heads: int, T: int) -> list[tuple[torch.Tensor, float, float]]:
    """The heads that make the delta at `lag`: (bias over s = 0..T-1, output weight, lin p or None)."""
    s = torch.arange(T, dtype=torch.float64)
    if rpe == "learned":
        bias = torch.full((T,), -OFF, dtype=torch.float64)
        bias[lag] = 0.0
        return [(bias, 1.0, None)]
    # the fit's heads are normalized over the window, normalization-free ones are not
    return [(-p * s, c / float(torch.exp(-p * s).sum()), p) for p, c in _lin_delta_fit(lag, heads, T)]


@functools.lru_cache(maxsize=None)
def _lin_delta_fit(lag: int, heads: int, T: int) -> tuple:
    """(p, c) of the best lin fit of the delta at `lag` found with `heads` heads; the same for every task
    draw, so fitted once (a fit takes seconds)."""
    fit = fit_heads(torch.eye(T, dtype=torch.float64)[lag], "lin", heads, residual=False)[-1]
    return tuple(zip(fit.p, fit.c))


def _kernel_l1(heads: list, lag: int, T: int) -> float:
    kernel = sum(c * torch.exp(bias) for bias, c, _ in heads)
    return float((kernel - torch.eye(T, dtype=torch.float64)[lag]).abs().sum())


def _gate_solve(nodes: list[torch.Tensor], points: list[torch.Tensor], indicator: torch.Tensor) -> torch.Tensor:
    """Coefficients over the products prod_r exp(B_{r,j_r} u_r) that equal `indicator` on a grid.

    ``points[r]`` are the values argument r takes and ``nodes[r]`` as many distinct B's; the grid is their
    product (row-major, like the task's table codes). The matrix is a Kronecker product of invertible
    Vandermonde matrices in exp(u), so the interpolation is exact.
    """
    gates = torch.ones(1, 1, dtype=torch.float64)
    for b, u in zip(nodes, points):
        gates = torch.kron(gates, torch.exp(u[:, None] * b[None, :]))
    return torch.linalg.solve(gates, indicator)


def _adaptive_plan(task, tc, values: torch.Tensor, symbols: torch.Tensor) -> list[tuple]:
    """Per memory i and lag value l of g_i: (stage, i, l, argument coordinates, B nodes per argument, gate
    coefficients); the stage is the layer that builds the memory, min(i, K)."""

    def nodes(n: int) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)

    S, plan = len(task.symbols), []
    for i, table in enumerate(task.tables):
        a = tc.g_arity(i)
        points = [values] + [symbols] * (a - 1)
        coords = [0] + [2 + j for j in range(a - 1)]
        # table codes run over symbols for every argument; x_t takes token values only
        codes = [k for k in range(S**a) if k // S ** (a - 1) < len(task.values)]
        lags = [int(table[k]) for k in codes]
        for l in sorted(set(lags)):
            indicator = torch.tensor([1.0 if g == l else 0.0 for g in lags], dtype=torch.float64)
            bs = [nodes(len(u)) for u in points]
            plan.append((min(i, tc.depth), i, l, coords, bs, _gate_solve(bs, points, indicator)))
    return plan


def _multi_index(flat: int, sizes: list[int]) -> list[int]:
    """The gate's multi-index over the arguments, row-major like the Kronecker product."""
    idx = []
    for n in reversed(sizes):
        idx.append(flat % n)
        flat //= n
    return idx[::-1]


def _set_adaptive_weights(model, plan: list[tuple], kernels: dict, layers: int, T: int, attention: str) -> None:
    """Write the plan's heads into a zeroed model: one head per (memory, lag, gate, kernel head)."""
    learned = model.cfg.rpe == "learned"
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[0, 0] = 1.0  # coordinate 0: x_t
        model.embed.bias[1] = 1.0  # coordinate 1: the constant every key reads
        for k in range(layers):
            attn, h = model.attn[k], 0
            ps = torch.ones(model.cfg.heads, dtype=torch.float64)  # unused heads: zero weights, any scale
            for stage, i, l, coords, bs, beta in plan:
                if stage != k:
                    continue
                for flat, coef in enumerate(beta):
                    idx = _multi_index(flat, [len(b) for b in bs])
                    for bias, c, p in kernels[l]:
                        for coord, b, j in zip(coords, bs, idx):
                            if attention == "dp":  # query B . u against the constant key
                                attn.q.weight[h, coord] = b[j]
                            else:  # tmx: p (w . h_t) = B . u
                                attn.w.weight[h, coord] = b[j] / p
                        if attention == "dp":
                            attn.k.weight[h, 1] = 1.0
                        attn.v.weight[h, 0] = 1.0
                        attn.o.weight[2 + i, h] = coef * c
                        if learned:
                            attn.rpe.table[h] = bias
                        else:
                            ps[h] = p
                        h += 1
            if not learned:
                attn.rpe.log_p.copy_(ps.log())


def _snap_memories(model, plan: list[tuple], layers: int, symbols: torch.Tensor) -> bool:
    """Where the hidden FFN after a layer has the units, make it snap the memories that layer built onto the
    symbol grid: staircase(m) - m, 2 units per step and 2 for -m, per memory. False where it cannot."""
    sym = symbols.sort().values
    gap = float((sym[1:] - sym[:-1]).min()) if len(sym) > 1 else 1.0
    eps = gap / 8  # ramp width: exact within gap / 2 - eps / 2 of a symbol
    per_memory = 2 * len(sym)
    if layers == 1:
        return False
    built = [sorted({i for st, i, *_ in plan if st == k}) for k in range(layers - 1)]
    if model.ffn is None or any(len(b) * per_memory > model.cfg.ffn_width for b in built):
        return False
    with torch.no_grad():
        for k, memories in enumerate(built):
            fc1, fc2, u = model.ffn[k].fc1, model.ffn[k].fc2, 0
            for i in memories:
                c = 2 + i
                fc1.weight[u, c], fc1.weight[u + 1, c] = 1.0, -1.0  # relu(m) - relu(-m) = m
                fc2.weight[c, u], fc2.weight[c, u + 1] = -1.0, 1.0
                u += 2
                for lo, hi in zip(sym[:-1], sym[1:]):
                    mid = float(lo + hi) / 2
                    for shift, sign in ((0.5, 1.0), (-0.5, -1.0)):  # clamp((m - mid) / eps + 1/2, 0, 1)
                        fc1.weight[u, c] = 1.0 / eps
                        fc1.bias[u] = -mid / eps + shift
                        fc2.weight[c, u] = sign * float(hi - lo)
                        u += 1
                fc2.bias[c] = float(sym[0])
    return True
