"""The language-model experiments' runs read back: 1a's arms, a run's size and cost, and the figures
(validation curves against tokens seen, per arm)."""

from __future__ import annotations

from ..plotting import pyplot, save_figure
from .base import Results


def _model(row: dict) -> dict:
    return row["config"]["model"]


def arms_of(res: Results) -> dict[int, dict[str, dict]]:
    """The 1a arms read off the stored runs, grouped by width D: the base has the fewest layers, heads and
    FFN units of its group; +layer more layers, +heads more heads, +width a wider FFN. Each arm as the
    model fields that select it."""
    out = {}
    for D in res.levels("model.dim"):
        group = [_model(r) for r in res.select({"model.dim": D})]
        L0, H0 = min(m["layers"] for m in group), min(m["heads"] for m in group)
        W0 = min(m.get("ffn_width", 4 * D) for m in group)
        base = {"model.dim": D, "model.layers": L0, "model.heads": H0, "model.ffn_width": W0}
        arms = {"base": base}
        for m in group:
            key = {"model.dim": D, "model.layers": m["layers"], "model.heads": m["heads"]}
            key["model.ffn_width"] = m.get("ffn_width", 4 * D)
            if m["layers"] > L0:
                arms["+layer"] = key
            elif m["heads"] > H0:
                arms["+heads"] = key
            elif key["model.ffn_width"] > W0:
                arms["+width"] = key
        out[D] = arms
    return out


def where_of(res: Results, key: dict) -> dict:
    """A filter that also matches rows stored without an ffn_width (older stores: 4 D)."""
    rows = res.select(key)
    if not rows:
        key = {k: v for k, v in key.items() if k != "model.ffn_width"}
    return key


def describe(res: Results, key: dict) -> tuple:
    rows = [r for r in res.select(where_of(res, key)) if r["status"] == "done"]
    r = rows[0] if rows else {}
    steps, batch, seq = (r.get("steps"), *(r.get("config", {}).get(s, {}) for s in ("train", "task")))
    tokens = steps * batch.get("batch_size", 0) * seq.get("seq_len", 0) if steps and batch and seq else None
    secs = sorted(x["seconds"] for x in rows if x.get("seconds"))
    return r.get("params"), tokens, secs[len(secs) // 2] if secs else None


def _curves(res, where: dict) -> list[tuple[list, list]]:
    """Per finished seed, (tokens seen, validation loss) of its stored curve."""
    out = []
    for row in res.select(where):
        curve = (row.get("metrics") or {}).get("curve") or []
        cfg = row["config"]
        per_step = cfg.get("train", {}).get("batch_size", 0) * cfg.get("task", {}).get("seq_len", 0)
        pts = [(s * per_step, v) for s, v in curve if isinstance(v, (int, float))]
        if row["status"] == "done" and pts:
            out.append(([p[0] for p in pts], [p[1] for p in pts]))
    return out


def _draw(ax, res, where: dict, label: str, color, style: str = "-") -> None:
    for i, (x, y) in enumerate(_curves(res, where)):
        ax.plot(x, y, style, color=color, lw=1.2, alpha=0.8, label=label if i == 0 else None)


def figure_1a(res, path: str) -> None:
    """One panel per base width: each arm's validation curves (one line a seed)."""
    plt = pyplot()
    groups = arms_of(res)
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(5 * max(1, len(groups)), 3.6), squeeze=False)
    colors = {"base": "0.5", "+layer": "C0", "+heads": "C1", "+width": "C2"}
    for ax, (D, arms) in zip(axes[0], groups.items()):
        for label, key in arms.items():
            _draw(ax, res, where_of(res, key), label, colors.get(label, "C3"))
        ax.set_title(f"1a (text): base D = {D}")
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("validation loss (nats per token)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    save_figure(fig, path)


def figure_3b(res, path: str) -> None:
    """DP (solid) against DP-free (dashed; dotted: DP-free at DP's FFN width where a wider, matched one
    ran) validation curves at each size."""
    plt = pyplot()
    sizes = sorted(
        {(r["config"]["model"]["layers"], r["config"]["model"]["dim"], r["config"]["model"]["heads"]) for r in res.rows}
    )
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (L, D, H) in enumerate(sizes):
        where = {"model.layers": L, "model.dim": D, "model.heads": H}
        _draw(ax, res, {**where, "model.attention": "dp", "model.ffn_width": 4 * D}, f"L={L} D={D} DP", f"C{i}")
        widths = res.levels("model.ffn_width", {**where, "model.attention": "dp_free"})
        for w in widths:  # dashed: the widest (the DP model's parameter count where it ran); dotted: FFN 4D
            label = f"L={L} D={D} DP-free" + (f", FFN {w}" if len(widths) > 1 else "")
            style = "--" if w == max(widths) else ":"
            _draw(ax, res, {**where, "model.attention": "dp_free", "model.ffn_width": w}, label, f"C{i}", style)
    ax.set_title("3b (text): DP against DP-free")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("validation loss (nats per token)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    save_figure(fig, path)
