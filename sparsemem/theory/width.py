"""The width floor: how well m ReLU units represent a readout of one token, given that token exactly.

A one-layer model whose attention extracts the memory token x exactly is left with its FFN and the
linear readout of the residual stream, which together make

    g(x) = alpha + beta x + sum_{j <= m} c_j relu(x - u_j)

(a unit relu(w x + b) with w < 0 is |w| (relu(x - u) - (x - u)), u = -b / w: the same span). The width
floor of f at m is the smallest E[(f(x) - g(x))^2] / Var f(x) over that family, with x drawn from the
task's token law. ``width_floors`` returns the best fit found, an upper bound on that optimum: greedy
knot selection (orthogonal matching pursuit, each coefficient solved by least squares, once over the
readout's own kinks and once over those and a grid over the tokens' range), then joint refinement of knots and
coefficients by L-BFGS; where f's own kinks number at most m, f itself is one start, and its error is 0
to rounding. All in float64.

Where the model's FFN also sees other coordinates of the residual stream (its own token, the other
heads' outputs) it is not bound by this family exactly, so the floor is a reference level for what
width m buys, not a bound on a trained model.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Optional

import torch

GRID = 4096  # quadrature points of a continuous token law (equal-mass bins' midpoints)
CANDIDATES = 129  # grid knots besides the readout's own kinks
REFINE_STEPS = 300


def token_law(kind: str, values: Optional[list] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(points, weights) of a quadrature for E over one token of the given input law."""
    if kind in ("rademacher", "discrete"):
        pts = torch.tensor([-1.0, 1.0] if kind == "rademacher" else list(values), dtype=torch.float64)
        return pts, torch.full_like(pts, 1 / len(pts))
    mid = [(i + 0.5) / GRID for i in range(GRID)]
    if kind == "uniform":
        pts = torch.tensor([2 * q - 1 for q in mid], dtype=torch.float64)
    elif kind == "gaussian":
        pts = torch.tensor([NormalDist().inv_cdf(q) for q in mid], dtype=torch.float64)
    else:
        raise ValueError(f"token law {kind!r}: rademacher, discrete, uniform or gaussian")
    return pts, torch.full_like(pts, 1 / GRID)


def readout_kinks(readout) -> torch.Tensor:
    """Where f(x) of one token bends: a relu_spline's knots, relu_net's 0, none for the others."""
    kind = readout.cfg.kind
    if kind == "relu_spline":
        v, t, _, _ = readout.units()
        return t / v[0]
    if kind == "relu_net":
        return torch.zeros(1, dtype=torch.float64)
    return torch.zeros(0, dtype=torch.float64)


def width_floors(task, widths) -> dict[int, float]:
    """{m: the width floor of the task's readout at m} for a task whose readout sees one token."""
    if task.cfg.memory_size() != 1:
        raise ValueError(
            f"a width floor needs a readout of one token (one lag, dim 1); this one sees {task.cfg.memory_size()}"
        )
    law = task.cfg.input
    x, w = token_law(law.kind, law.values)
    y = task.readout(x[:, None]).to(torch.float64)
    var = float(w @ (y - w @ y) ** 2)
    if var == 0:
        return {int(m): 0.0 for m in widths}
    kinks = readout_kinks(task.readout)
    grid = torch.linspace(float(x.min()), float(x.max()), CANDIDATES, dtype=torch.float64)
    candidates = torch.cat([kinks, grid])
    return {int(m): _fit(x, w, y, candidates, kinks, int(m)) / var for m in widths}


def _basis(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones_like(x)[:, None], x[:, None], torch.relu(x[:, None] - knots)], 1)


def _solve(x, w, y, knots) -> tuple[float, torch.Tensor]:
    """The weighted least-squares error and coefficients of the span with these knots."""
    s = w.sqrt()[:, None]
    a = _basis(x, knots) * s
    c = torch.linalg.lstsq(a, y[:, None] * s, driver="gelsd").solution
    r = a @ c - y[:, None] * s
    return float((r**2).sum()), c[:, 0]


def _fit(x, w, y, candidates, kinks, m) -> float:
    if m == 0:
        return _solve(x, w, y, kinks[:0])[0]
    starts = [_pursuit(x, w, y, candidates, m)]
    if 0 < len(kinks) <= m:
        starts.append(kinks)
    elif len(kinks):
        starts.append(_pursuit(x, w, y, kinks, m))
    return min(_refine(x, w, y, k) for k in starts)


def _pursuit(x, w, y, candidates, m) -> torch.Tensor:
    """m knots chosen one at a time, each the candidate whose column most lowers the least-squares error."""
    s = w.sqrt()[:, None]
    cols = torch.relu(x[:, None] - candidates) * s  # (N, C)
    q, _ = torch.linalg.qr(_basis(x, candidates[:0]) * s)  # the affine part
    r = y[:, None] * s - q @ (q.T @ (y[:, None] * s))
    chosen: list[int] = []
    for _ in range(min(m, len(candidates))):
        perp = cols - q @ (q.T @ cols)
        norm = (perp**2).sum(0)
        score = (perp.T @ r)[:, 0] ** 2 / norm.clamp_min(1e-300)
        score[norm < 1e-24] = -1
        if chosen:
            score[chosen] = -1
        k = int(score.argmax())
        chosen.append(k)
        u = perp[:, k : k + 1] / norm[k].sqrt()
        q = torch.cat([q, u], 1)
        r = r - u @ (u.T @ r)
    return candidates[chosen]


def _refine(x, w, y, knots) -> float:
    """L-BFGS on knots and coefficients together from a start; the least-squares error at the knots it ends
    at, or at the start's where that is lower."""
    start, c0 = _solve(x, w, y, knots)
    u = knots.clone().requires_grad_(True)
    c = c0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [u, c], max_iter=REFINE_STEPS, line_search_fn="strong_wolfe", tolerance_grad=1e-15, tolerance_change=1e-18
    )

    def loss():
        opt.zero_grad()
        err = w @ (_basis(x, u) @ c - y) ** 2
        err.backward()
        return err

    opt.step(loss)
    return min(start, _solve(x, w, y, u.detach())[0])
