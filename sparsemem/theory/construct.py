"""Explicit constructions of Thm 3.1 (Task I) and Thm 5.1 (Task III), without training.

For a task with memories k = 1..M (the lags of a fixed task, read as delta
kernels; the kernels of a kernel task) and H heads per memory:

1. each memory's kernel rho_k gets the optimal fit by H DP-free heads of the
   chosen RPE type (fit.py): scales p_{k,h}, weights c_{k,h} and a lag-0
   weight c0_k carried by the residual path;
2. the model is an ordinary 1-layer DP-free sparsemem Transformer with D =
   1 + M: coordinate 0 holds x_t (the embedding), head (k, h) reads it and
   writes c_{k,h} times its output into coordinate 1 + k, so that
   z_k = coord_{1+k} + c0_k coord_0 approximates (X * rho_k)(t);
3. the readout approximates f: linear (FFN-free) or a width-m ReLU layer with
   random first-layer weights on z and a least-squares second layer, as in
   Barron-space approximation.

Tokens must be scalar (d = 1) and the output read at the last position.
"""

from __future__ import annotations

import math

import torch

from ..config import ConfigError, ModelConfig, RunConfig
from ..models import make_model
from ..tasks import make_task
from .fit import fit_heads

CONSTRUCT_RPES = ("lin", "log", "t5", "kerple_log")


def memory_kernels(task) -> torch.Tensor:
    """(M, T) kernels of a fixed task (deltas at its lags) or a kernel task."""
    cfg = task.cfg
    if cfg.kind == "kernel":
        return task.rho.clone()
    if cfg.kind == "fixed":
        rho = torch.zeros(len(cfg.lags), cfg.seq_len, dtype=torch.float64)
        for k, lag in enumerate(cfg.lags):
            rho[k, lag] = 1.0
        return rho
    raise ConfigError(f"task.kind = {cfg.kind!r}: constructions cover fixed (Thm 3.1) and kernel (Thm 5.1) tasks")


def construct(cfg: RunConfig, heads: int, width: int = 0, samples: int = 20_000, seed: int = 0):
    """Build the construction for cfg's task with `heads` heads per memory and readout width `width`.

    Returns (model, info) with info = {"val_loss", "val_rel", "kernel_l2": [...], "params"}.
    """
    task = make_task(cfg.task)
    if cfg.task.dim != 1 or cfg.task.output != "last":
        raise ConfigError("constructions need task.dim = 1 and task.output = last")
    rpe = cfg.model.rpe
    if rpe not in CONSTRUCT_RPES:
        raise ConfigError(f"model.rpe = {rpe!r}: constructions need one of {', '.join(CONSTRUCT_RPES)}")
    kernels = memory_kernels(task)
    M, T = kernels.shape
    fits = [fit_heads(kernels[k], rpe, heads, buckets=cfg.model.rpe_buckets,
                      max_distance=cfg.model.rpe_max_distance)[-1] if rpe == "t5" else
            fit_heads(kernels[k], rpe, heads)[-1] for k in range(M)]
    H = sum(f.heads for f in fits)  # a short kernel can cap the heads of its group
    mcfg = ModelConfig(layers=1, heads=H, head_dim=1, dim=1 + M, ffn_width=width, attention="dp_free",
                       rpe=rpe, rpe_buckets=cfg.model.rpe_buckets, rpe_max_distance=cfg.model.rpe_max_distance)
    model = make_model(mcfg, task).double()
    attn = model.attn[0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[0, 0] = 1.0  # x_t into coordinate 0
        attn.v.weight[:, 0] = 1.0  # every head reads coordinate 0
        ps, head = [], 0
        for k, fit in enumerate(fits):
            for p, c in zip(fit.p, fit.c):
                attn.o.weight[1 + k, head] = c
                ps.append(p)
                head += 1
        attn.rpe.log_p.copy_(torch.tensor(ps, dtype=torch.float64).log())
        if rpe == "kerple_log":
            attn.rpe.log_a.zero_()  # a = 1, the shape fit.py uses
    # z = Mz @ coords: z_k = coord_{1+k} + c0_k coord_0
    mz = torch.zeros(M, 1 + M, dtype=torch.float64)
    for k, fit in enumerate(fits):
        mz[k, 1 + k] = 1.0
        mz[k, 0] = fit.c0
    gen = torch.Generator().manual_seed(seed)
    x, y = task.sample(samples, gen, torch.float64)
    with torch.no_grad():
        coords = (model.embed(x[:, -1:]) + attn.last_from_tokens(x, model.embed))[:, 0]  # (N, 1 + M)
        z = coords @ mz.T
        if width == 0:
            a = torch.cat([z, torch.ones(samples, 1, dtype=torch.float64)], 1)
            sol = torch.linalg.lstsq(a, y[:, None]).solution[:, 0]
            model.readout.weight.copy_((sol[:M] @ mz)[None])
            model.readout.bias.fill_(float(sol[M]))
        else:
            scale = z.std(0).clamp(min=1e-12)
            w = torch.randn(width, M, generator=gen, dtype=torch.float64) / scale / math.sqrt(M)
            b = (torch.rand(width, generator=gen, dtype=torch.float64) * 2 - 1) * 2
            b = b - (w @ z.mean(0))
            feats = torch.relu(z @ w.T + b)
            a = torch.cat([feats, torch.ones(samples, 1, dtype=torch.float64)], 1)
            ridge = 1e-8 * (a ** 2).mean()
            sol = torch.linalg.solve(a.T @ a + ridge * torch.eye(width + 1, dtype=torch.float64), a.T @ y)
            model.readout.fc1.weight.copy_(w @ mz)
            model.readout.fc1.bias.copy_(b)
            model.readout.fc2.weight.copy_(sol[:width][None])
            model.readout.fc2.bias.fill_(float(sol[width]))
    xv, yv = task.validation_set(cfg.train.val_samples, dtype=torch.float64)
    with torch.no_grad():
        mse = float(((model(xv) - yv) ** 2).mean())
    var = float(yv.var(unbiased=False))
    return model, {"val_loss": mse, "val_rel": mse / var if var > 0 else None,
                   "kernel_l2": [f.l2 for f in fits], "heads_per_memory": [f.heads for f in fits],
                   "params": model.num_params(), "model_config": mcfg.model_dump(mode="json")}


def construct_adaptive(cfg: RunConfig, heads: int, seed: int = 0):
    """Prop 4.2's DP construction for y_t = x_{t-g(x_t)} (adaptive, K = 0, one memory, discrete tokens).

    A 1-layer normalization-free DP model with lin RPE, read linearly. Head (j, l, i) has query
    B_j x_t against a constant key, so its weight is exp(B_j x_t) exp(-p_i s): the dot product gates by
    the token (exp(B_j x) over j interpolates the indicator 1{g(x) = l} exactly on the value set) and
    the RPE selects the lag (the heads i of group l fit the delta at lag l without the residual).
    `heads` is the number of exponentials per lag; the model has |values| * |lags| * heads heads.
    """
    tc = cfg.task
    if tc.kind != "adaptive" or tc.depth != 0 or len(tc.lags) != 1 or tc.readout.kind != "linear" \
            or list(tc.readout.weights) != [0, 1] or tc.output != "last":
        raise ConfigError("the adaptive construction covers y_t = x_{t-g(x_t)}: an adaptive task with one "
                          "memory, depth 0, readout {kind: linear, weights: [0, 1]}, output last (e.g. prop42)")
    task = make_task(tc)
    T = tc.seq_len
    values = torch.tensor(task.values, dtype=torch.float64)
    V = len(values)
    table = task.tables[0]  # lag for each symbol (the pad symbol, if any, last)
    lag_of = [int(table[i]) for i in range(V)]
    lags = sorted(set(lag_of))
    B = torch.linspace(-1.0, 1.0, V, dtype=torch.float64) if V > 1 else torch.zeros(1, dtype=torch.float64)
    gates = torch.exp(values[:, None] * B[None, :])  # (V values, V exponentials)
    beta = {l: torch.linalg.solve(gates, torch.tensor([1.0 if g == l else 0.0 for g in lag_of],
                                                      dtype=torch.float64)) for l in lags}
    fits = {l: fit_heads(torch.eye(T, dtype=torch.float64)[l], "lin", heads, residual=False)[-1] for l in lags}
    H = sum(V * fits[l].heads for l in lags)
    mcfg = ModelConfig(layers=1, heads=H, head_dim=1, dim=3, ffn_width=0, attention="dp", normalize=False,
                       rpe="lin", scale=False)
    model = make_model(mcfg, task).double()
    attn = model.attn[0]
    s = torch.arange(T, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[0, 0] = 1.0  # coordinate 0: x_t
        model.embed.bias[1] = 1.0  # coordinate 1: the constant the keys read
        ps, h = [], 0
        for l in lags:
            fit = fits[l]
            for j in range(V):
                for p, c in zip(fit.p, fit.c):
                    z = torch.exp(-p * s).sum()  # the fit's heads are normalized; NF heads are not
                    attn.q.weight[h, 0] = B[j]
                    attn.k.weight[h, 1] = 1.0
                    attn.v.weight[h, 0] = 1.0
                    attn.o.weight[2, h] = beta[l][j] * c / z
                    ps.append(p)
                    h += 1
        attn.rpe.log_p.copy_(torch.tensor(ps, dtype=torch.float64).log())
        model.readout.weight[0, 2] = 1.0
    xv, yv = task.validation_set(cfg.train.val_samples, dtype=torch.float64)
    with torch.no_grad():
        err = model(xv) - yv
    mse = float((err ** 2).mean())
    var = float(yv.var(unbiased=False))
    return model, {"val_loss": mse, "val_rel": mse / var if var > 0 else None, "sup_error": float(err.abs().max()),
                   "kernel_l1": {str(l): fits[l].l1 for l in lags}, "heads_total": H,
                   "params": model.num_params(), "model_config": mcfg.model_dump(mode="json")}
