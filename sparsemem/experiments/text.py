"""Experiments 1a and 3b as the paper ran them: byte-level language models on text.

They need a corpus (``--corpus DIR``, any folder of text files, or
``openwebtext`` through `datasets`), so `sparsemem reproduce` runs them only
when named. The paper trained GPT-2-sized models on OpenWebText for 10k
iterations; these are small models sized for a CPU, so compare directions,
not numbers.
"""

from __future__ import annotations

from ..config import ModelConfig
from ..models import LanguageModel
from ..plotting import pyplot, save_figure
from .base import Experiment, Results, Table, Verdict, fmt, spec

T_TEXT = 128


def text_train(profile: str) -> dict:
    # language models train their RPE slopes at the common lr (rpe_lr_scale 1), not the toy setting's 30x
    if profile == "paper":
        return {
            "steps": 10_000,
            "batch_size": 32,
            "lr": 1e-3,
            "rpe_lr_scale": 1.0,
            "schedule": "cosine",
            "warmup_steps": 500,
            "val_samples": 512,
            "eval_every": 1000,
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


def lm_model(**kw) -> dict:
    return {
        "dim": 128,
        "head_dim": 32,
        "ffn_width": 512,
        "attention": "dp",
        "rpe": "lin",
        "layer_norm": True,
        "scale": True,
        **kw,
    }


def text_task(corpus: str) -> dict:
    return {"kind": "text", "corpus": corpus, "seq_len": T_TEXT, "output": "all"}


def lm_params(**kw) -> int:
    return LanguageModel(ModelConfig(**lm_model(**kw))).num_params()


BASE_1A = (2, 2)


def variants_1a() -> dict[str, tuple[int, int]]:
    L0, H0 = BASE_1A
    target, h = lm_params(layers=L0 + 1, heads=H0), H0
    while lm_params(layers=L0, heads=h) < target:
        h += 1
    return {"base": (L0, H0), "+layer": (L0 + 1, H0), "+heads": (L0, h)}


def specs_1a(profile: str, corpus: str):
    cases = [{"model.layers": L, "model.heads": H} for L, H in variants_1a().values()]
    return [
        spec("1a_text", {"task": text_task(corpus), "model": lm_model(), "train": text_train(profile)}, {}, cases=cases)
    ]


def analyse_1a(res: Results):
    rows, vals = [], {}
    for label, (L, H) in variants_1a().items():
        v = res.value("val_loss", model__layers=L, model__heads=H)
        vals[label] = v
        rows.append([label, L, H, lm_params(layers=L, heads=H), v])
    table = Table("byte LM: validation cross-entropy (nats per byte)", ["model", "L", "H", "parameters", "loss"], rows)
    if any(v is None for v in vals.values()):
        return [table], Verdict(None, "incomplete")
    drop_l, drop_h = vals["base"] - vals["+layer"], vals["base"] - vals["+heads"]
    return [table], Verdict(drop_l > drop_h, f"loss drop from a layer {fmt(drop_l)}, from heads {fmt(drop_h)}")


SIZES_3B = [(2, 64, 2), (2, 128, 4), (4, 128, 4)]  # (layers, dim, heads)


def specs_3b(profile: str, corpus: str):
    cases = [
        {"model.layers": L, "model.dim": D, "model.heads": H, "model.head_dim": D // H, "model.ffn_width": 4 * D}
        for L, D, H in SIZES_3B
    ]
    return [
        spec(
            "3b_text",
            {"task": text_task(corpus), "model": lm_model(), "train": text_train(profile)},
            {"model.attention": ["dp", "dp_free"]},
            cases=cases,
        )
    ]


def analyse_3b(res: Results):
    rows, ok = [], []
    for L, D, H in SIZES_3B:
        a = res.value("val_loss", model__layers=L, model__dim=D, model__attention="dp")
        b = res.value("val_loss", model__layers=L, model__dim=D, model__attention="dp_free")
        rows.append([f"L={L}, D={D}, H={H}", a, b])
        if a is not None and b is not None:
            ok.append(a < b)
    table = Table("byte LM: validation cross-entropy with and without DP", ["model", "DP", "DP-free"], rows)
    if len(ok) < len(SIZES_3B):
        return [table], Verdict(None, "incomplete")
    ours = "; ".join(f"{r[0]}: {fmt(r[1])} vs {fmt(r[2])}" for r in rows)
    return [table], Verdict(all(ok), ours)


def figure_bars(res: Results, path: str, title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [r["name"].split("/")[1] for r in res.rows]
    ax.bar(range(len(res.rows)), [r["val_loss"] or 0 for r in res.rows])
    ax.set_xticks(range(len(res.rows)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("validation loss (nats/byte)")
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
