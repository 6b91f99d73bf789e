"""The few matplotlib helpers every figure of the package shares (file output only)."""

from __future__ import annotations

import math
from typing import Optional, Sequence


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_known(ax, xs: Sequence, values: Sequence, style: str, label: str, floor: float = 1e-16):
    """Plot the points whose value is known and finite (missing and diverged cells left out), each at
    least `floor` so a log axis can show an exact zero; nothing when no point is known."""
    pts = [(x, v) for x, v in zip(xs, values) if v is not None and math.isfinite(v)]
    if pts:
        ax.plot([x for x, _ in pts], [max(v, floor) for _, v in pts], style, label=label)


def log_axes(ax, xlabel: str, ylabel: str, title: str, ybase: Optional[int] = None, legend: Optional[int] = 8):
    """Log2 x axis, log y axis (base 10 unless ybase), labels, title and an optional legend."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", **({"base": ybase} if ybase else {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=legend)


def save_figure(fig, path: str) -> None:
    """Write a figure as PNG and free it."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
