"""Optimal head fits: how well H DP-free heads of one RPE type represent a kernel.

A 1-layer DP-free head h of RPE type r, read at the last of S positions, has
the normalized kernel w_p(s) = exp(p phi(s)) / sum_j exp(p phi(j)), s = 0..S-1.
With an FFN-free (linear) readout the model's effective kernel is

    K(s) = sum_h c_h w_{p_h}(s) + c_0 1{s = 0}        (c_0: the residual path)

and for i.i.d. zero-mean unit-variance inputs the MSE on a linear target
y = sum_s rho(s) x_{t-s} is exactly sum_s (K(s) - rho(s))^2. ``fit_heads``
searches the p_h globally: greedy selection on a dense grid of p (each step
adds the atom that lowers the error most, with every c solved exactly by least
squares), then joint refinement of all p by L-BFGS with c re-solved inside
(variable projection). Each H starts from the best (H-1)-head solution, so
the error never rises with H.

The surface has many local minima and the weights of a good fit can be huge
(a delta at lag 7 from 16 lin heads takes weights near 1e11 that cancel), so a
single start lands in a minimum that depends on the BLAS's floating-point path:
on an AVX2-only CPU one such fit was 0.44 where an AVX-512 one found 0.007.
Every H therefore also tries H scales spread over fixed windows of p and keeps
the best, and a fit whose weights pass WEIGHT_LIMIT is refused. What a search
returns is still the best fit found: an upper bound on the optimum, which
agrees across floating-point paths to the tolerance tests/test_theory.py
states, not to the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..plotting import log_axes, pyplot, save_figure
from ..registry import RPES, bias, phi, rpes
from ..tasks.kernel import kernel_values

FIT_RPES = rpes(theory="fit")
P_GRID = torch.logspace(-3, 2, 600, dtype=torch.float64)


def head_kernels(kind: str, p: torch.Tensor, length: int, **kw) -> torch.Tensor:
    """Normalized kernels w_p(s) for every p: (len(p), length), float64."""
    s = torch.arange(length, dtype=torch.float64)
    return torch.softmax(bias(p[:, None], phi(kind, s, **kw)), -1)


@dataclass
class Fit:
    rpe: str
    heads: int
    p: list[float]
    c: list[float]  # per head
    c0: float  # residual weight at lag 0
    l2: float  # sum_s (K - rho)^2: the MSE floor
    l1: float  # sum_s |K - rho|
    kernel: torch.Tensor  # the fitted K(s)

    @property
    def max_weight(self) -> float:
        """The largest |c_h|. The kernel sums weights this large into values of order 1, so float64
        realizes it to about max_weight * 1e-16 per lag; past WEIGHT_LIMIT the fit is refused."""
        return float(torch.tensor(self.c, dtype=torch.float64).abs().max()) if self.c else 0.0


# The conditioning limit: head weights past 1e13 leave float64 a roundoff of 1e-3 per lag in the realized
# kernel, more than the fits this module is used for can stand. A fit that needs them is not taken; the
# search keeps the best fit with fewer heads (an extra head weighted 0).
WEIGHT_LIMIT = 1e13


def _solve(atoms: torch.Tensor, rho: torch.Tensor, residual: bool = True):
    """Least squares for the weights of atoms (rows) and, with `residual`, a lag-0 term (last coef).

    ``rho`` is one kernel (S,) or several (M, S) read from the same atoms, each with weights of its own:
    the coefficients are then (k + 1, M) and the fitted kernels (M, S).
    """
    e0 = torch.zeros(1, atoms.shape[1], dtype=atoms.dtype)
    e0[0, 0] = 1.0 if residual else 0.0
    basis = torch.cat([atoms, e0], 0) if residual else atoms
    rhs = rho.T if rho.dim() == 2 else rho[:, None]  # (S, M)
    q, r = torch.linalg.qr(basis.T)  # basis.T = q r, so the fit is q q^T rho
    diag = r.diagonal().abs()
    if r.shape[0] != r.shape[1] or bool((diag < 1e-12 * diag.max()).any()):
        # (nearly) dependent atoms: the minimum-norm least-squares weights
        coef = torch.linalg.lstsq(basis.T.detach(), rhs, driver="gelsd").solution
    else:
        coef = torch.linalg.solve_triangular(r, q.T @ rhs, upper=True)
    if not residual:  # report a zero lag-0 weight in the last place, as with the residual
        coef = torch.cat([coef, coef.new_zeros(1, coef.shape[1])])
        fitted = coef[:-1].T @ basis
    else:
        fitted = coef.T @ basis  # the kernels these weights realize, (M, S)
    if rho.dim() == 1:
        return coef[:, 0], fitted[0]
    return coef, fitted


def _finish(kind: str, p: torch.Tensor, rho: torch.Tensor, residual: bool = True, **kw) -> Fit:
    atoms = head_kernels(kind, p, rho.shape[-1], **kw)
    coef, fitted = _solve(atoms, rho, residual)
    err = fitted - rho
    c0 = float(coef[-1]) if rho.dim() == 1 else coef[-1].tolist()
    return Fit(kind, len(p), p.tolist(), coef[:-1].tolist(), c0, float((err**2).sum()), float(err.abs().sum()), fitted)


P_LIMIT = 1e3  # |p| is kept within [1e-4, 1e3] (positive) or [-1e3, 1e3] (signed) during refinement


def _refine(
    kind: str, p: torch.Tensor, rho: torch.Tensor, iters: int, residual: bool = True, signed: bool = False, **kw
) -> torch.Tensor:
    """Joint L-BFGS over log p (over p itself when ``signed``) with c solved by least squares inside."""
    if signed:
        to_p = lambda z: z.clamp(-P_LIMIT, P_LIMIT)  # noqa: E731
        z = p.clone().requires_grad_(True)
    else:
        to_p = lambda z: z.clamp(math.log(1e-4), math.log(P_LIMIT)).exp()  # noqa: E731
        z = p.log().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [z],
        lr=1,
        max_iter=iters,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-30,
        tolerance_change=1e-40,
        history_size=20,
    )

    def closure():
        opt.zero_grad()
        _, fitted = _solve(head_kernels(kind, to_p(z), rho.shape[-1], **kw), rho, residual)
        loss = ((fitted - rho) ** 2).sum()
        loss.backward()
        return loss

    try:
        opt.step(closure)
    except (RuntimeError, IndexError):  # a singular step, or torch's line search losing its bracket
        return p
    new = to_p(z.detach())
    return new if torch.isfinite(new).all() else p


# Windows of log10 p for the spread starts: every decade and two-decade window of P_GRID's range at
# half-decade offsets. Kernel-agnostic: a delta at a short lag wants p near 1, a heavy tail small p.
SPREAD_WINDOWS = [(a / 2, a / 2 + 1) for a in range(-6, 3)] + [(a, a + 2) for a in range(-3, 1)]
SCREEN_ITERS = 15  # refinement steps each kept start gets before the best one is refined in full
SCREEN_KEEP = 3  # starts kept for refinement, the best as they stand


def _spread_starts(H: int, signed: bool) -> list[torch.Tensor]:
    """H scales spread geometrically over each window (none for one head: the grid covers it)."""
    if H < 2:
        return []
    return [torch.logspace(lo, hi, H, dtype=torch.float64) for lo, hi in SPREAD_WINDOWS]


def _best_start(kind, starts, rho, iters, residual, signed, **kw) -> Fit:
    """Several starts ranked as they stand; the best SCREEN_KEEP of them refined briefly, and the best of
    those refined in full.

    The error surface of exponential and power-law sums is full of local minima, and which one a single
    start falls into changes with the floating-point path of the BLAS (MKL on AVX2 against AVX-512): a
    best-of-several search is what makes the fit the same, to a tolerance, on every machine.
    """
    ranked = sorted((_finish(kind, p0, rho, residual, **kw) for p0 in starts), key=_l2_key)
    if not iters:
        return ranked[0]
    screened = [
        _finish(kind, _refine(kind, _p(f), rho, min(iters, SCREEN_ITERS), residual, signed, **kw), rho, residual, **kw)
        for f in ranked[:SCREEN_KEEP]
    ]
    best = min(ranked[:1] + screened, key=_l2_key)
    if iters > SCREEN_ITERS:
        fit = _finish(kind, _refine(kind, _p(best), rho, iters, residual, signed, **kw), rho, residual, **kw)
        best = min([best, fit], key=_l2_key)
    return best


def _l2_key(fit: Fit) -> float:
    """The error a search ranks by: inf for a fit that is not finite or is past the conditioning limit."""
    return fit.l2 if math.isfinite(fit.l2) and fit.max_weight <= WEIGHT_LIMIT else math.inf


def _p(fit: Fit) -> torch.Tensor:
    return torch.tensor(fit.p, dtype=torch.float64)


def fit_heads(
    rho: torch.Tensor,
    kind: str,
    max_heads: int,
    refine_iters: int = 50,
    grid: Optional[torch.Tensor] = None,
    stop_l1: Optional[float] = None,
    stop_l2: Optional[float] = None,
    residual: bool = True,
    signed: bool = False,
    **kw,
) -> list[Fit]:
    """Best fits with 1..max_heads heads of one RPE type to the kernel rho(0..S-1).

    ``rho`` may also be M kernels (M, S) that share the heads and weigh them each their own way (the
    tokens at M lags read from one set of heads): the error is then summed over the M kernels.
    With ``stop_l1`` / ``stop_l2`` the search ends at the first H whose l1 / l2 error is at most that.
    ``residual=False`` drops the lag-0 term: the heads alone must make the kernel. ``signed`` lets p
    take either sign (``model.rpe_sign = free``): the grid gets the negated values too.
    """
    rho = rho.to(torch.float64)
    S = rho.shape[-1]
    max_heads = min(max_heads, S - 1)  # with the lag-0 term, S atoms already span every kernel
    fixed = RPES[kind].fixed_p if kind in RPES else None
    if fixed is not None:  # fixed slopes (alibi): only the weights are free
        return [_finish(kind, fixed(H), rho, residual, **kw) for H in range(1, max_heads + 1)]
    grid = P_GRID if grid is None else grid
    if signed:
        grid = torch.cat([-grid.flip(0), grid])
    bank = head_kernels(kind, grid, S, **kw)  # (G, S)
    chosen: list[float] = []
    fits: list[Fit] = []
    e0 = torch.zeros(1 if residual else 0, S, dtype=torch.float64)
    if residual:
        e0[0, 0] = 1.0
    for H in range(1, max_heads + 1):
        # greedy: the grid atom whose part outside the current span best explains the residual
        current = torch.cat([e0, head_kernels(kind, torch.tensor(chosen, dtype=torch.float64), S, **kw)], 0)
        q = torch.linalg.qr(current.T)[0] if current.shape[0] else current.new_zeros(S, 0)  # (S, k) basis
        targets = rho if rho.dim() == 2 else rho[None]  # (M, S)
        resid = targets - (targets @ q) @ q.T
        perp = bank - (bank @ q) @ q.T
        norms = (perp**2).sum(1)
        # atoms (nearly) inside the span add nothing but ill-conditioning: skip them
        fresh = norms > 1e-8 * (bank**2).sum(1)
        explained = ((perp @ resid.T) ** 2).sum(1)  # summed over the targets
        gains = torch.where(fresh, explained / norms.clamp(min=1e-300), torch.zeros_like(norms))
        best_p = torch.tensor(chosen + [float(grid[int(gains.argmax())])], dtype=torch.float64)
        fit = _best_start(kind, [best_p] + _spread_starts(H, signed), rho, refine_iters, residual, signed, **kw)
        if fits and not _l2_key(fit) <= fits[-1].l2:  # never worse than H-1 heads (an extra head can be weighted 0)
            prev = fits[-1]
            zero = [0.0] * rho.shape[0] if rho.dim() == 2 else 0.0  # one weight per kernel, or one
            fit = Fit(kind, H, prev.p + [float(grid[0])], prev.c + [zero], prev.c0, prev.l2, prev.l1, prev.kernel)
        chosen = fit.p
        fits.append(fit)
        if (stop_l1 is not None and fit.l1 <= stop_l1) or (stop_l2 is not None and fit.l2 <= stop_l2):
            break
    return fits


def target_kernel(spec, length: int) -> torch.Tensor:
    """rho(0..length-1) from a kernel spec (``exp:B``, ``power:B``, ``delta:T``, a list) or a sum of deltas."""
    if isinstance(spec, str) and spec.startswith("deltas:"):
        rho = torch.zeros(length, dtype=torch.float64)
        for t in spec[len("deltas:") :].split("+"):
            rho[int(t)] += 1.0
        return rho
    return kernel_values(spec, length)


def fit_table(kernel: str, rpes: list[str], heads: list[int], seq_len: int) -> dict:
    """{rpe: {H: Fit}} for the requested head counts (every H up to the largest is fitted)."""
    rho = target_kernel(kernel, seq_len)
    out = {}
    for rpe in rpes:
        fits = fit_heads(rho, rpe, max(heads))
        out[rpe] = {H: fits[H - 1] for H in heads}
    return out


def plot_fits(table: dict, kernel: str, path: str) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for rpe, fits in table.items():
        Hs = sorted(fits)
        for ax, attr in zip(axes, ("l2", "l1")):
            ax.plot(Hs, [max(getattr(fits[H], attr), 1e-32) for H in Hs], "o-", label=f"{rpe} RPE")
    for ax, name in zip(axes, ("l2 error (MSE floor)", "l1 error")):
        log_axes(ax, "heads H", name, "")
    fig.suptitle(f"best fit of {kernel} by H DP-free heads")
    save_figure(fig, path)


def lag_kernels(lags, length: int) -> torch.Tensor:
    """One delta kernel per lag, (M, length): the memory tokens a model must read from its heads."""
    rho = torch.zeros(len(lags), length, dtype=torch.float64)
    for i, t in enumerate(lags):
        rho[i, int(t)] = 1.0
    return rho


def extraction_floors(lags, length: int, kind: str, max_heads: int, signed: bool = False) -> list[float]:
    """For H = 1..max_heads: the mean over the lags of the squared l2 error of reading each lag's token
    from the best H shared heads of this RPE type, each with its own linear weights (0: every token
    exactly, 1: none). For a readout linear in the tokens with unit-variance i.i.d. inputs this is the
    relative MSE floor of each token's extraction."""
    fits = fit_heads(lag_kernels(lags, length), kind, max_heads, signed=signed)
    return [f.l2 / len(lags) for f in fits]
