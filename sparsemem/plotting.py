"""The few matplotlib helpers every figure of the package shares (file output only)."""

from __future__ import annotations

import math
from typing import Optional, Sequence


def pyplot():
    """matplotlib's pyplot, on the file-only Agg backend unless pyplot is already in use (a notebook's
    inline backend is left alone; our figures are closed once saved, so they do not show there)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_known(ax, xs: Sequence, values: Sequence, style: str, label: str, floor: float = 1e-16):
    """Plot the points whose value is known and finite (missing and diverged cells left out), each at
    least `floor` so a log axis can show an exact zero; nothing when no point is known. A value with a
    spread over seeds (``median``, ``lo``, ``hi``: experiments.base.Spread) is drawn at its median with a
    band from its lowest to its highest seed."""
    mid = lambda v: getattr(v, "median", v)  # noqa: E731
    pts = [(x, v) for x, v in zip(xs, values) if v is not None and math.isfinite(mid(v))]
    if not pts:
        return
    (line,) = ax.plot([x for x, _ in pts], [max(mid(v), floor) for _, v in pts], style, label=label)
    band = [(x, v.lo, v.hi) for x, v in pts if hasattr(v, "lo") and v.lo != v.hi and math.isfinite(v.hi)]
    if band:
        ax.fill_between(
            [b[0] for b in band],
            [max(b[1], floor) for b in band],
            [max(b[2], floor) for b in band],
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )


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
