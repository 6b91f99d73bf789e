"""Head-count scaling (Thm 3.1, Thm 5.1): how many heads a memory needs, and how large their weights get.

Delta memory at lag T (Thm 3.1). With exponents on an arithmetic grid,
p_h = a h (h = 1..H), a lin head's kernel is a normalized power z^h of
z = e^{-a s}, and a log head's of z = s^{-a} (z = 0 at s = 0, where a log head
never looks). So H heads plus the residual's lag-0 weight realize every

    K(s) = P(z_s) + c_0 1{s = 0},   P a polynomial of degree H with P(0) = 0,

which is the substitution the theorem's proof makes. ``interpolation`` takes
H = T and the P with zeros at z_1..z_{T-1} and P(z_T) = 1: K is exact on lags
0..T, and every lag s > T carries P(z_s), which falls with the scale a. The
smallest a with l1 error <= eps is found by bisection; the error is a product
of differences, so it is computed in log space without cancellation for any T.
The heads' weights are not: c_h = m_h N_h / P(z_T) (m_h the coefficients of P,
N_h the head's normalizer), reported as log10 sum_h |c_h|, the decimal digits
a model needs to carry them.

``exact_l2`` is the check that fewer heads do not do: the least-squares fit
with H heads on the same grid, in mpmath at the precision the weights need.
sqrt of its sum of squares bounds the l1 error of every fit with those heads
from below (l1 >= l2 norm).

Kernels of Thm 5.1: ``rates`` fits each kernel with H = 1..max heads of an RPE
type (``fit.fit_heads``) and fits a line to log error against log H (the rate
H^-n) and against H (a geometric rate).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ..plotting import log_axes, pyplot, save_figure
from ..registry import phi, rpes
from .fit import fit_heads

SCALING_RPES = rpes(theory="scaling")


def _log_z(rpe: str, a: float, S: int) -> np.ndarray:
    if rpe in SCALING_RPES:  # log z_s = a phi(s): z = e^{-a s} (lin), s^{-a} (log; 0 at s = 0)
        return a * phi(rpe, torch.arange(S, dtype=torch.float64)).numpy()
    raise ValueError(f"rpe {rpe!r}: head-count scaling is defined for {', '.join(SCALING_RPES)}")


def _log_abs_diff(rpe: str, a: float, j: np.ndarray, s: np.ndarray) -> np.ndarray:
    """log |z_j - z_s| for lags j, s >= 1 (broadcast), without forming z."""
    lo, hi = np.minimum(j, s), np.maximum(j, s)
    if rpe == "lin":  # e^{-a lo} (1 - e^{-a (hi - lo)})
        gap = a * (hi - lo)
        return -a * lo + np.log(-np.expm1(-gap))
    gap = a * (np.log(hi) - np.log(lo))  # lo^{-a} (1 - (lo/hi)^a)
    return -a * np.log(lo) + np.log(-np.expm1(-gap))


def _interp_logs(T: int, rpe: str, a: float, S: int):
    """log |P(z_s)| for s > T and log |P(z_T)|, P(z) = z prod_{j<T} (z - z_j)."""
    lz = _log_z(rpe, a, S)
    j = np.arange(1, T, dtype=np.float64)[None, :]
    s = np.arange(T, S, dtype=np.float64)[:, None]
    logp = lz[T:] + _log_abs_diff(rpe, a, j, s).sum(1)  # rows: s = T..S-1
    return logp[1:], logp[0]


def interpolation_l1(T: int, rpe: str, a: float, S: int) -> float:
    """l1 error of the H = T construction at scale a: sum over s > T of |P(z_s) / P(z_T)|."""
    if T < 1:
        raise ValueError(f"lag T = {T}: must be >= 1")
    tail, at_t = _interp_logs(T, rpe, a, S)
    with np.errstate(over="ignore"):
        return float(np.exp(tail - at_t).sum())


def interpolation_log10_weight(T: int, rpe: str, a: float, S: int) -> float:
    """log10 sum_h |c_h| of the H = T construction (heads only, the residual's c_0 left out)."""
    lz = _log_z(rpe, a, S)
    # log e_k of z_1..z_{T-1}, all positive: no cancellation in log space
    le = np.full(T, -np.inf)
    le[0] = 0.0
    for lj in lz[1:T]:
        le[1:] = np.logaddexp(le[1:], lj + le[:-1])
    h = np.arange(1, T + 1, dtype=np.float64)
    finite = np.isfinite(lz)
    log_norm = np.array([np.logaddexp.reduce(k * lz[finite]) for k in h])  # log N_h
    # P(z) = sum_h (-1)^{T-h} e_{T-h} z^h, so |m_h| = e_{T-h}
    log_m = le[T - h.astype(int)]
    _, at_t = _interp_logs(T, rpe, a, S)
    return float((np.logaddexp.reduce(log_m + log_norm) - at_t) / math.log(10))


def interpolation(T: int, rpe: str, eps: float, seq_factor: int = 4) -> dict:
    """The H = T construction for delta:T in S = seq_factor T lags at the smallest scale a with l1 <= eps."""
    if not 0 < eps < 1:
        raise ValueError(f"eps = {eps}: must be in (0, 1)")
    S = seq_factor * T + 1
    lo, hi = 1e-3, 1.0
    unit = 1.0 if rpe == "lin" else T  # a log head needs a ~ T to part s = T from T + 1
    while interpolation_l1(T, rpe, hi * unit, S) > eps:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise RuntimeError(f"no scale reaches l1 <= {eps} for {rpe} at T = {T}")
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if interpolation_l1(T, rpe, mid * unit, S) <= eps:
            hi = mid
        else:
            lo = mid
    a = hi * unit
    return {
        "T": T,
        "rpe": rpe,
        "eps": eps,
        "heads": T,
        "a": a,
        "seq_len": S,
        "l1": interpolation_l1(T, rpe, a, S),
        "log10_weight": interpolation_log10_weight(T, rpe, a, S),
    }


def exact_l2(T: int, rpe: str, heads: int, a: float, seq_factor: int = 4) -> float:
    """Least-squares sum of squares of delta:T by `heads` grid heads (p_h = a h) and the residual, in mpmath."""
    import mpmath

    S = seq_factor * T + 1
    # digits: the powers span z^heads down to the smallest z, and the weights grow alike
    span = a * (S - 1) if rpe == "lin" else a * math.log(S - 1)
    dps = 30 + int(2 * heads * span / math.log(10))
    with mpmath.workdps(dps):
        rows = []
        for s in range(S):
            z = mpmath.exp(-a * s) if rpe == "lin" else (mpmath.mpf(s) ** (-a) if s else mpmath.mpf(0))
            rows.append([mpmath.mpf(s == 0)] + [z**h for h in range(1, heads + 1)])
        A = mpmath.matrix(rows)
        y = mpmath.matrix([mpmath.mpf(s == T) for s in range(S)])
        q, r = mpmath.qr(A)
        n = heads + 1
        c = mpmath.lu_solve(r[:n, :n], (q.T * y)[:n])
        res = A * c - y
        return float(mpmath.fsum(v**2 for v in res))


def exact_fewer(T: int, rpe: str, eps: float, seq_factor: int = 4) -> dict:
    """Lower bound on the l1 error with H = T - 1 grid heads: sqrt of the least l2 over a grid of scales."""
    unit = 1.0 if rpe == "lin" else T
    scales = [unit * f for f in (0.25, 0.5, 1, 2, 4, 8)]
    best = min((exact_l2(T, rpe, T - 1, a, seq_factor), a) for a in scales)
    return {
        "T": T,
        "rpe": rpe,
        "heads": T - 1,
        "l1_at_least": math.sqrt(best[0]),
        "a": best[1],
        "scales": scales,
        "reaches": math.sqrt(best[0]) <= eps,
    }


def growth(xs: list[float], ys: list[float]) -> Optional[dict]:
    """Least-squares lines for log y against log x (power law) and against x (exponential); None below 3 points."""
    if len(set(xs)) < 3:
        return None
    x, y = np.asarray(xs, float), np.log(np.asarray(ys, float))
    out = {}
    for name, u in (("power", np.log(x)), ("exponential", x)):
        slope, icpt = np.polyfit(u, y, 1)
        rms = float(np.sqrt(np.mean((slope * u + icpt - y) ** 2)))
        out[name] = {"slope": float(slope), "rms": rms}
    out["better"] = min(("power", "exponential"), key=lambda k: out[k]["rms"])
    return out


def scaling_table(lags: list[int], rpes: list[str], eps_list: list[float], seq_factor: int = 4) -> dict:
    """{rpe: {eps: [interpolation rows]}} and the growth fits of heads and of weight digits against T
    (from three lags on)."""
    rows = {rpe: {eps: [interpolation(T, rpe, eps, seq_factor) for T in lags] for eps in eps_list} for rpe in rpes}
    fits = {}
    for rpe in rpes if len(lags) >= 3 else []:
        for eps in eps_list:
            rs = rows[rpe][eps]
            fits[f"{rpe} eps={eps:g}"] = {
                "heads": growth([r["T"] for r in rs], [r["heads"] for r in rs]),
                "log10_weight": growth([r["T"] for r in rs], [max(r["log10_weight"], 1e-3) for r in rs]),
            }
    return {"rows": rows, "fits": fits}


# Thm 5.1 kernels: two each tail, one a single head of its own type represents exactly, one not
THM51_KERNELS = {
    "s^-1.5": lambda s: torch.where(s >= 1, s.clamp(min=1) ** -1.5, torch.zeros_like(s)),
    "(1+s)^-1.5": lambda s: (1 + s) ** -1.5,
    "e^-0.5s": lambda s: torch.exp(-0.5 * s),
    "(1+s) e^-0.5s": lambda s: (1 + s) * torch.exp(-0.5 * s),
}


def rates(kernels: list[str], rpes: list[str], max_heads: int, seq_len: int, floor: float = 1e-13) -> dict:
    """{kernel: {rpe: {"l2": [...], "l1": [...], "fit": growth of l2 against H}}} for H = 1..max_heads.

    The lines are fitted over H >= 2 where the l2 error is above ``floor`` (float64's reach); None if fewer
    than three such points (a kernel the RPE represents at once).
    """
    s = torch.arange(seq_len, dtype=torch.float64)
    out = {}
    for name in kernels:
        if name not in THM51_KERNELS:
            raise ValueError(f"kernel {name!r}: one of {', '.join(THM51_KERNELS)}")
        rho = THM51_KERNELS[name](s)
        out[name] = {}
        for rpe in rpes:
            fits = fit_heads(rho, rpe, max_heads, refine_iters=30)
            l2 = [f.l2 for f in fits]
            keep = [(H, e) for H, e in enumerate(l2, 1) if H >= 2 and e > floor]
            fit = growth([h for h, _ in keep], [e for _, e in keep])
            out[name][rpe] = {"heads": list(range(1, len(l2) + 1)), "l2": l2, "l1": [f.l1 for f in fits], "fit": fit}
    return out


def plot_scaling(table: dict, path: str, rate_table: Optional[dict] = None) -> None:
    plt = pyplot()
    n = 3 if rate_table else 2
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8))
    fig.subplots_adjust(wspace=0.35)
    for rpe, by_eps in table["rows"].items():
        for eps, rs in by_eps.items():
            Ts = [r["T"] for r in rs]
            style = "o-" if rpe == "lin" else "s--"
            axes[0].plot(Ts, [r["heads"] for r in rs], style, label=f"{rpe}, l1 <= {eps:g}")
            axes[1].plot(Ts, [r["log10_weight"] for r in rs], style, label=f"{rpe}, l1 <= {eps:g}")
    log_axes(axes[0], "lag T", "heads H", "delta at lag T: heads", ybase=2)
    log_axes(axes[1], "lag T", "log10 sum |c_h|", "delta at lag T: weight digits", ybase=10)
    if rate_table:
        ax, drawn = axes[2], 0
        for kernel, by_rpe in rate_table.items():
            for rpe, r in by_rpe.items():
                if r.get("fit") is None:  # represented exactly by one head: nothing to show
                    continue
                ax.plot(
                    r["heads"],
                    [max(e, 1e-32) for e in r["l2"]],
                    "o-" if rpe == "lin" else "s--",
                    ms=3,
                    label=f"{kernel}, {rpe}",
                )
                drawn += 1
        log_axes(
            ax, "heads H", "l2 error (MSE floor)", "Thm 5.1 kernels (exact ones left out)", legend=6 if drawn else None
        )
    save_figure(fig, path)
