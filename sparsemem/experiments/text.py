"""Experiments 1a and 3b as the paper ran them: language models on text.

They need a corpus (``--corpus DIR``, any folder of text files, or
``openwebtext`` through `datasets`), so `sparsemem reproduce` runs them only
when named. The quick profile trains small byte-level models sized for a CPU
(compare directions, not numbers); the paper profile trains GPT-2-small-class
models on GPT-2 tokens for 10,000 iterations of about 100k tokens, as the paper
did: a GPU's work.
"""

from __future__ import annotations

from ..config import ModelConfig
from ..models import LanguageModel
from ..plotting import pyplot, save_figure
from .base import Experiment, Results, Table, Verdict, fmt, spec

# The quick profile: byte-level models sized for a CPU (compare directions, not numbers). The paper
# profile: GPT-2-small-class decoders as the paper trained them (App. H.2): GPT-2's BPE, T = 1024, about
# 100k tokens an iteration (96 x 1024), 10,000 iterations, AdamW (betas 0.9 / 0.95, decay 0.1) with
# warm-up and cosine decay to a tenth; one GPU's work (see docs/reproduction.md).
SHAPES = {
    "quick": {
        "seq_len": 128,
        "dim": 128,
        "head_dim": 32,
        "tokenizer": "byte",
        "base_1a": (2, 2),
        "sizes_3b": [(2, 64, 2), (2, 128, 4), (4, 128, 4)],
    },
    "paper": {
        "seq_len": 1024,
        "dim": 768,
        "head_dim": 64,
        "tokenizer": "gpt2",
        "base_1a": (6, 12),
        "sizes_3b": [(6, 512, 8), (12, 768, 12), (24, 1024, 16)],
    },
}


def text_train(profile: str) -> dict:
    # language models train their RPE slopes at the common lr (rpe_lr_scale 1), not the toy setting's 30x
    if profile == "paper":
        return {
            "steps": 10_000,
            "batch_size": 96,
            "lr": 6e-4,
            "rpe_lr_scale": 1.0,
            "weight_decay": 0.1,
            "betas": [0.9, 0.95],
            "schedule": "cosine",
            "warmup_steps": 700,
            "min_lr_ratio": 0.1,
            "val_samples": 256,
            "eval_every": 500,
            "grad_clip": 1.0,
        }
    return {
        "steps": 300,
        "batch_size": 16,
        "lr": 3e-3,
        "rpe_lr_scale": 1.0,
        "schedule": "cosine",
        "warmup_steps": 30,
        "val_samples": 128,
        "eval_every": 100,
        "grad_clip": 1.0,
    }


def lm_model(profile: str = "quick", **kw) -> dict:
    shape = SHAPES[profile]
    return {
        "dim": shape["dim"],
        "head_dim": shape["head_dim"],
        "ffn_width": 4 * shape["dim"],
        "attention": "dp",
        "rpe": "lin",
        "layer_norm": True,
        "scale": True,
        **kw,
    }


def text_task(corpus: str, profile: str = "quick") -> dict:
    shape = SHAPES[profile]
    task = {"kind": "text", "corpus": corpus, "seq_len": shape["seq_len"], "output": "all"}
    if shape["tokenizer"] != "byte":
        task.update(tokenizer=shape["tokenizer"], max_bytes=5_000_000_000)  # about 1B GPT-2 tokens
    return task


def lm_params(profile: str = "quick", **kw) -> int:
    """Parameters of a model of the profile's shape (built on the meta device: no memory, no init)."""
    import torch

    with torch.device("meta"):
        return LanguageModel(ModelConfig(**lm_model(profile, **kw))).num_params()


def variants_1a(profile: str = "quick") -> dict[str, tuple[int, int]]:
    """The base (L, H), one more layer, and the heads that give the base as many parameters as the extra
    layer (the first H at or above the +layer model's count)."""
    L0, H0 = SHAPES[profile]["base_1a"]
    target, h = lm_params(profile, layers=L0 + 1, heads=H0), H0
    while lm_params(profile, layers=L0, heads=h) < target:
        h += 1
    return {"base": (L0, H0), "+layer": (L0 + 1, H0), "+heads": (L0, h)}


def specs_1a(profile: str, corpus: str):
    cases = [{"model.layers": L, "model.heads": H} for L, H in variants_1a(profile).values()]
    base = {"task": text_task(corpus, profile), "model": lm_model(profile), "train": text_train(profile)}
    return [spec("1a_text", base, {}, cases=cases)]


def _key(row: dict) -> tuple:
    m = row["config"]["model"]
    return m["layers"], m["dim"], m["heads"]


def analyse_1a(res: Results):
    """The variants are read off the stored runs: the base has the fewest layers and heads, +layer more
    layers, +heads more heads."""
    found = {(_key(r)[0], _key(r)[2]): r for r in res.rows}
    rows, vals = [], {}
    if found:
        L0, H0 = min(L for L, _ in found), min(H for _, H in found)
        named = {"base": (L0, H0)}
        named.update({"+layer": k for k in found if k[0] > L0})
        named.update({"+heads": k for k in found if k[1] > H0})
    else:
        named = {}
    for label in ("base", "+layer", "+heads"):
        key = named.get(label)
        r = found.get(key) if key else None
        v = res.value("val_loss", {"model.layers": key[0], "model.heads": key[1]}) if r else None  # median over seeds
        vals[label] = v
        rows.append([label, key[0] if key else None, key[1] if key else None, r.get("params") if r else None, v])
    table = Table("LM: validation cross-entropy (nats per token)", ["model", "L", "H", "parameters", "loss"], rows)
    if any(v is None for v in vals.values()):
        return [table], Verdict(None, "incomplete")
    drop_l, drop_h = vals["base"] - vals["+layer"], vals["base"] - vals["+heads"]
    return [table], Verdict(drop_l > drop_h, f"loss drop from a layer {fmt(drop_l)}, from heads {fmt(drop_h)}")


def specs_3b(profile: str, corpus: str):
    cases = [
        {"model.layers": L, "model.dim": D, "model.heads": H, "model.head_dim": D // H, "model.ffn_width": 4 * D}
        for L, D, H in SHAPES[profile]["sizes_3b"]
    ]
    base = {"task": text_task(corpus, profile), "model": lm_model(profile), "train": text_train(profile)}
    return [spec("3b_text", base, {"model.attention": ["dp", "dp_free"]}, cases=cases)]


def analyse_3b(res: Results):
    """Sizes read off the stored runs (L, D, H), DP against DP-free at each."""
    sizes = sorted({_key(r) for r in res.rows})
    rows, ok = [], []
    for L, D, H in sizes:
        a = res.value("val_loss", {"model.layers": L, "model.dim": D, "model.attention": "dp"})
        b = res.value("val_loss", {"model.layers": L, "model.dim": D, "model.attention": "dp_free"})
        rows.append([f"L={L}, D={D}, H={H}", a, b])
        if a is not None and b is not None:
            ok.append(a < b)
    table = Table("LM: validation cross-entropy with and without DP", ["model", "DP", "DP-free"], rows)
    if not sizes or len(ok) < len(sizes):
        return [table], Verdict(None, "incomplete")
    ours = "; ".join(f"{r[0]}: {fmt(r[1])} vs {fmt(r[2])}" for r in rows)
    return [table], Verdict(all(ok), ours)


def figure_bars(res: Results, path: str, title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [r["name"].split("/")[1] for r in res.rows]
    ax.bar(range(len(res.rows)), [r["val_loss"] or 0 for r in res.rows])
    ax.set_xticks(range(len(res.rows)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("validation loss (nats per token)")
    ax.set_title(title)
    save_figure(fig, path)


EXP_1A_TEXT = Experiment(
    name="1a_text",
    specs=specs_1a,
    analyse=analyse_1a,
    needs_corpus=True,
    figure=lambda res, path: figure_bars(res, path, "1a (text): depth against heads"),
)

EXP_3B_TEXT = Experiment(
    name="3b_text",
    specs=specs_3b,
    analyse=analyse_3b,
    needs_corpus=True,
    figure=lambda res, path: figure_bars(res, path, "3b (text): DP against DP-free"),
)
