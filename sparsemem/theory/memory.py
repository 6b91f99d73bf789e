"""The curse of memory, by optimal fits: how many states or heads a kernel needs.

A diagonal linear recurrence with N states read linearly has the kernel
sum_n C_n B_n lambda_n^s + D 1{s = 0}, a sum of N decaying exponentials: the
same span as N lin-RPE heads (a normalized exponential is a scaled one). So
the smallest N for a kernel equals the smallest lin H, and the comparison
with log-RPE heads is the comparison of the two fits. For each sequence
length S and kernel, ``smallest`` finds the least N (= lin H) and the least
log H whose optimal fit reaches relative MSE <= target, where relative MSE =
l2 / sum_s rho(s)^2 (the MSE over Var(y) for i.i.d. unit-variance inputs).
"""

from __future__ import annotations

from typing import Optional

from ..plotting import log_axes, pyplot, save_figure
from .fit import fit_heads, target_kernel


def smallest(kernel: str, rpe: str, length: int, target: float, max_heads: int) -> Optional[int]:
    """Least H (for lin: least N of a linear recurrence) with relative MSE <= target, or None."""
    rho = target_kernel(kernel, length)
    scale = float((rho**2).sum())
    fits = fit_heads(rho, rpe, max_heads, refine_iters=30, stop_l2=target * scale)
    for H, fit in enumerate(fits, 1):
        if fit.l2 <= target * scale:
            return H
    return None


def memory_table(kernels: list[str], lengths: list[int], target: float, max_heads: int) -> dict:
    """{kernel: {"linear_rnn N / lin H": {S: n}, "log H": {S: h}}}."""
    out = {}
    for kernel in kernels:
        out[kernel] = {
            "linear_rnn N = lin H": {S: smallest(kernel, "lin", S, target, max_heads) for S in lengths},
            "log H": {S: smallest(kernel, "log", S, target, max_heads) for S in lengths},
        }
    return out


def plot_memory(table: dict, target: float, max_heads: int, path: str) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(table), figsize=(4.4 * len(table), 3.6), squeeze=False)
    for ax, (kernel, rows) in zip(axes[0], table.items()):
        for label, pts in rows.items():
            xs = list(pts)
            ys = [pts[S] if pts[S] is not None else max_heads * 1.5 for S in xs]
            ax.plot(xs, ys, "o-", label=label)
        ax.axhline(max_heads * 1.5, color="grey", lw=0.5, ls=":")
        log_axes(
            ax,
            "sequence length S",
            f"smallest N or H (above the line: > {max_heads})",
            f"{kernel}: relative MSE <= {target:g}",
            ybase=2,
        )
    save_figure(fig, path)
