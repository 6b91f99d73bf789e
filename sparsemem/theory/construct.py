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
from ..registry import rpes
from ..tasks import make_task
from .fit import fit_heads

CONSTRUCT_RPES = rpes(theory="construct")


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


def fit_readout(model, task, mz: torch.Tensor, width: int, samples: int, seed: int) -> None:
    """Fit the readout to f on z = coords @ mz.T, the memory values the model computes.

    Linear readout (width 0): least squares. Width m: random ReLU features of z (first layer, scaled
    to z's spread) and a least-squares second layer, as in Barron-space approximation.
    """
    gen = torch.Generator().manual_seed(seed)
    x, y = task.sample(samples, gen, torch.float64)
    M = mz.shape[0]
    with torch.no_grad():
        # the residual stream at the last position, in chunks: deeper models form (chunk, H, T, T) logits
        coords = torch.cat([model.stream(c)[:, -1] for c in x.split(1000)])
        z = coords @ mz.T
        if width == 0:
            a = torch.cat([z, torch.ones(samples, 1, dtype=torch.float64)], 1)
            sol = torch.linalg.lstsq(a, y[:, None]).solution[:, 0]
            model.readout.weight.copy_((sol[:M] @ mz)[None])
            model.readout.bias.fill_(float(sol[M]))
            return
        scale = z.std(0).clamp(min=1e-12)
        w = torch.randn(width, M, generator=gen, dtype=torch.float64) / scale / math.sqrt(M)
        b = (torch.rand(width, generator=gen, dtype=torch.float64) * 2 - 1) * 2
        b = b - (w @ z.mean(0))
        feats = torch.relu(z @ w.T + b)
        a = torch.cat([feats, torch.ones(samples, 1, dtype=torch.float64)], 1)
        # ridge least squares as a plain least-squares problem on [a; sqrt(ridge) I] (QR): the normal
        # equations a^T a would square the features' condition number, and their solve took another
        # floating-point path on AVX2 than on AVX-512 machines
        ridge = 1e-8 * (a**2).mean()
        stacked = torch.cat([a, ridge.sqrt() * torch.eye(width + 1, dtype=torch.float64)])
        rhs = torch.cat([y, y.new_zeros(width + 1)])
        sol = torch.linalg.lstsq(stacked, rhs[:, None], driver="gelsd").solution[:, 0]
        model.readout.fc1.weight.copy_(w @ mz)
        model.readout.fc1.bias.copy_(b)
        model.readout.fc2.weight.copy_(sol[:width][None])
        model.readout.fc2.bias.fill_(float(sol[width]))


def score(model, task, cfg: RunConfig) -> dict:
    xv, yv = task.validation_set(cfg.train.val_samples, dtype=torch.float64)
    with torch.no_grad():
        err = torch.cat([model(c) for c in xv.split(1000)]) - yv
    mse = float((err**2).mean())
    var = float(yv.var(unbiased=False))
    return {"val_loss": mse, "val_rel": mse / var if var > 0 else None, "sup_error": float(err.abs().max())}


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
    fits = [
        fit_heads(kernels[k], rpe, heads, buckets=cfg.model.rpe_buckets, max_distance=cfg.model.rpe_max_distance)[-1]
        if rpe == "t5"
        else fit_heads(kernels[k], rpe, heads)[-1]
        for k in range(M)
    ]
    H = sum(f.heads for f in fits)  # a short kernel can cap the heads of its group
    mcfg = ModelConfig(
        layers=1,
        heads=H,
        head_dim=1,
        dim=1 + M,
        ffn_width=width,
        attention="dp_free",
        rpe=rpe,
        rpe_buckets=cfg.model.rpe_buckets,
        rpe_max_distance=cfg.model.rpe_max_distance,
    )
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
    fit_readout(model, task, mz, width, samples, seed)
    return model, {
        **score(model, task, cfg),
        "kernel_l2": [f.l2 for f in fits],
        "max_head_weight": max(f.max_weight for f in fits),
        "heads_per_memory": [f.heads for f in fits],
        "params": model.num_params(),
        "model_config": mcfg.model_dump(mode="json"),
    }


def save_construction(model, info: dict, cfg: RunConfig, out) -> None:
    """model.pt, config.yaml (task, the construction's model, train) and result.json in folder ``out``;
    the folder reloads into an ordinary model."""
    import json
    from pathlib import Path

    import yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "config.yaml").write_text(
        yaml.safe_dump(
            {"task": cfg.to_dict()["task"], "model": info["model_config"], "train": cfg.to_dict()["train"]},
            sort_keys=False,
        )
    )
    (out / "result.json").write_text(json.dumps(info, indent=2))
