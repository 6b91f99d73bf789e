"""The paper's toy experiments 1b, 2a, 2b, 3a, 4a, 4b (PAPER.md section 6).

Common setup: x in {+-1}^1000 (d = 1), output read at the last position, so
the paper's position i is lag 1000 - i: its x_48, x_56, x_99 are lags 952,
944 and 901. Every cell is trained with the same AdamW setting (base.py).
"""

from __future__ import annotations

import functools
import math

from ..plotting import log_axes, plot_known, pyplot, save_figure
from .base import (
    Experiment,
    Results,
    Spread,
    Table,
    Verdict,
    all_of,
    any_of,
    fmt,
    fmt_spread,
    min_of,
    ratio,
    seeds_of,
    spec,
    train_settings,
    truth_label,
)

T = 1000
LAGS_3 = [952, 944, 901]  # x_48, x_56, x_99
LAG_1 = [901]  # x_99
RPES = ["lin", "log", "learned"]
DIM = 64


def grid_hm(profile: str) -> tuple[list[int], list[int]]:
    if profile == "paper":
        return [1, 2, 4, 8, 16, 32, 64], [16, 64, 256]
    return [1, 8, 32], [16, 64, 256]


def heads_1d(profile: str) -> list[int]:
    return [1, 2, 4, 8, 16, 32, 64]


def base(profile: str, task: dict, model: dict) -> dict:
    return {
        "task": {"seq_len": T, "input": "rademacher", "output": "last", **task},
        "model": {"layers": 1, "dim": DIM, "rpe_max_distance": T, "attention": "dp_free", **model},
        "train": train_settings(profile),
    }


def fixed_task(lags, readout) -> dict:
    return {"kind": "fixed", "lags": lags, "readout": readout}


TASK_1B = fixed_task(LAGS_3, {"kind": "relu_net", "width": 64})
TASK_2A = fixed_task(LAG_1, {"kind": "relu_net", "width": 64})
TASK_2B = fixed_task(LAGS_3, "sum")


def hm_specs(name: str, task: dict):
    def specs(profile: str):
        Hs, ms = grid_hm(profile)
        return [spec(name, base(profile, task, {}),
                     {"model.rpe": RPES, "model.heads": Hs, "model.ffn_width": ms}, seeds=seeds_of(profile))]
    return specs


def cell(res: Results, **where) -> str:
    """MSE (relative MSE): medians over seeds, the relative MSE's range across seeds beside it."""
    a, r = res.spread("val_loss", **where), res.spread("val_rel", **where)
    return f"{fmt(a.median)} ({fmt_spread(r)})" if a is not None else "—"


def hm_tables(res: Results, profile_H, profile_m, attention="dp_free") -> list[Table]:
    tables = []
    for rpe in RPES:
        rows = [[H] + [cell(res, model__rpe=rpe, model__heads=H, model__ffn_width=m, model__attention=attention)
                       for m in profile_m] for H in profile_H]
        tables.append(Table(f"RPE {rpe}: final validation MSE (relative MSE), rows H, columns m",
                            ["H \\ m"] + [str(m) for m in profile_m], rows))
    return tables


def grid_of(res: Results) -> tuple[list[int], list[int]]:
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    ms = sorted({r["config"]["model"]["ffn_width"] for r in res.rows})
    return Hs, ms


def hm_figure(res: Results, path: str, title: str, attention: str = "dp_free") -> None:
    plt = pyplot()

    Hs, ms = grid_of(res)
    fig, axes = plt.subplots(1, len(RPES), figsize=(4.6 * len(RPES), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.35)
    for ax, rpe in zip(axes[0], RPES):
        grid = [[res.value("val_rel", model__rpe=rpe, model__heads=H, model__ffn_width=m, model__attention=attention)
                 for m in ms] for H in Hs]
        vals = [[math.log10(max(v, 1e-12)) if v is not None and math.isfinite(v) else math.nan for v in row]
                for row in grid]
        im = ax.imshow(vals, origin="lower", cmap="viridis_r", vmin=-8, vmax=0.5, aspect="auto")
        ax.set_xticks(range(len(ms)), [str(m) for m in ms])
        ax.set_yticks(range(len(Hs)), [str(h) for h in Hs])
        ax.set_xlabel("FFN width m")
        ax.set_ylabel("heads H")
        ax.set_title(f"RPE {rpe}")
        for i, row in enumerate(vals):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w" if v > -4 else "k", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), label="log10 relative MSE")
    fig.suptitle(title, y=1.03)
    save_figure(fig, path)


def gains(res: Results, rpe: str, Hs, ms) -> dict:
    """MSE ratios as Spreads over seeds: raising m at the largest H, raising H at the smallest and largest m;
    and the best cell."""
    v = lambda H, m: res.spread("val_rel", model__rpe=rpe, model__heads=H, model__ffn_width=m,  # noqa: E731
                                model__attention="dp_free")
    over = lambda a, b: None if a is None or b is None else a / b  # noqa: E731
    return {
        "m_at_Hmax": over(v(Hs[-1], ms[0]), v(Hs[-1], ms[-1])),
        "m_at_Hmin": over(v(Hs[0], ms[0]), v(Hs[0], ms[-1])),
        "H_at_mmax": over(v(Hs[0], ms[-1]), v(Hs[-1], ms[-1])),
        "H_at_mmin": over(v(Hs[0], ms[0]), v(Hs[-1], ms[0])),
        "best": min_of(v(H, m) for H in Hs for m in ms),
    }


def gain_text(g) -> str:
    """A gain (a ratio of MSEs) as "12.3x", with its range across seeds as "[lo, hi]" where it has one."""
    if g is None:
        return "—"
    one = lambda x: "inf" if math.isinf(x) else f"{x:.3g}x"  # noqa: E731
    if isinstance(g, Spread):
        return one(g.median) if g.lo == g.hi else f"{one(g.median)} [{one(g.lo)}, {one(g.hi)}]"
    return one(g)


# -- 1b ------------------------------------------------------------------------
def analyse_1b(res: Results):
    Hs, ms = grid_of(res)
    tables = hm_tables(res, Hs, ms)
    best = {rpe: gains(res, rpe, Hs, ms)["best"] for rpe in RPES}
    known = [v for v in best.values() if v is not None]
    holds = None if not known else min_of(known) <= 1e-2
    ours = "best relative MSE per RPE: " + ", ".join(f"{k} {fmt_spread(v)}" for k, v in best.items())
    winners = [k for k, v in best.items() if v is not None and v.median <= 1e-2]
    detail = (f"Reached under {', '.join(winners)}." if winners else "No RPE reached it.") + \
        " lin and log heads have kernels monotone in the lag, so one head cannot isolate lags 901-952; " \
        "Thm 3.1 needs about e^(0.01 T) lin heads or T^1.01 log heads per memory there."
    return tables, Verdict(holds, ours, detail)


EXP_1B = Experiment(
    name="1b", title="Independent memories: one layer with enough H and m suffices",
    insight="(1b) For independent (fixed) memories a single layer with enough heads and FFN width suffices.",
    paper="1-layer DP-free, f = sum_{k=1}^{64} relu(w_k . (x_48, x_56, x_99)): H = 32, m = 256 suffice.",
    rule="the best 1-layer cell reaches relative MSE <= 1e-2",
    specs=hm_specs("1b", TASK_1B), analyse=analyse_1b,
    figure=lambda res, path: hm_figure(res, path, "1b: relu readout of lags 952, 944, 901"),
    notes="The paper does not say which RPE it used; we run lin, log and learned (one bias per distance).",
)


# -- 2a / 2b -------------------------------------------------------------------
def gain_rule(res: Results, helps: str, needs: float, idle: str):
    """Per RPE: does raising `helps` cut MSE >= `needs`x while raising `idle` cuts it < 2x?

    `helps` and `idle` name a gain of ``gains``: m_at_Hmax, H_at_mmax, H_at_mmin.
    Returns the tables, the per-RPE text and whether the rule holds under some RPE (None: no runs).
    """
    Hs, ms = grid_of(res)
    where = {"m_at_Hmax": f"m {ms[0]}->{ms[-1]} at H={Hs[-1]}", "H_at_mmax": f"H {Hs[0]}->{Hs[-1]} at m={ms[-1]}",
             "H_at_mmin": f"H {Hs[0]}->{Hs[-1]} at m={ms[0]}"}
    per, truths = [], []
    for rpe in RPES:
        g = gains(res, rpe, Hs, ms)
        if g[helps] is None or g[idle] is None:
            continue
        truths.append(all_of(g[helps] >= needs, g[idle] < 2))
        per.append(f"{rpe}: {where[helps]} {gain_text(g[helps])}, {where[idle]} {gain_text(g[idle])}")
    return hm_tables(res, Hs, ms), "; ".join(per) or "no runs", any_of(*truths) if truths else None


# 2a's diagnostic: the explanation of its verdict (a readout of one Boolean token is affine, so width cannot
# matter) predicts that with tokens uniform on [-1, 1], where f(x_99) = sum_k relu(w_k x_99) is genuinely
# nonlinear, raising m does cut the error. Same f, lag, grid of H and m and seeds; learned RPE, the one RPE
# whose heads can single out lag 901 (1b).
TASK_2A_UNIFORM = {**TASK_2A, "input": "uniform"}


def specs_2a(profile: str):
    Hs, ms = grid_hm(profile)
    return hm_specs("2a", TASK_2A)(profile) + [
        spec("2a", base(profile, TASK_2A_UNIFORM, {"rpe": "learned"}), {"model.heads": Hs, "model.ffn_width": ms},
             seeds=seeds_of(profile))]


def boolean_only(res: Results) -> Results:
    """The rows of the paper's setting (Rademacher tokens), without a diagnostic's."""
    return Results([r for r in res.rows if r["config"]["task"]["input"]["kind"] == "rademacher"], res.computed)


def analyse_2a(res: Results):
    uniform = Results(res.select(task__input__kind="uniform"))
    res = boolean_only(res)
    tables, ours, holds = gain_rule(res, "m_at_Hmax", 10, "H_at_mmax")
    detail = ("With x in {+-1}, any f(x_99) is affine in x_99 (two points), so once a head extracts the lag "
              "the readout needs no width; the error left is the attention's, which more heads reduce.")
    diagnostic = ""
    if uniform.rows:
        Hs, ms = grid_of(uniform)
        tables.append(hm_tables(uniform, Hs, ms)[2].renamed(
            "Diagnostic: the same target with tokens uniform on [-1, 1], learned RPE: MSE (relative MSE), "
            "rows H, columns m"))
        g = gains(uniform, "learned", Hs, ms)
        if g["m_at_Hmax"] is not None:
            confirmed = g["m_at_Hmax"] >= 10
            diagnostic = (f"the explanation predicts that with a nonlinear readout (tokens uniform on [-1, 1]) raising "
                          f"m cuts the error >= 10x (2a's bar); measured under learned RPE: m {ms[0]}->{ms[-1]} at "
                          f"H={Hs[-1]} cuts it {gain_text(g['m_at_Hmax'])} -> "
                          + {True: "confirmed", False: "refuted"}.get(confirmed, "inconclusive"))
    return tables, Verdict(holds, ours, detail, diagnostic)


SUM_KERNEL_2B = "deltas:" + "+".join(str(t) for t in LAGS_3)


def linear_floor_table(res: Results) -> Table:
    """2b: per H, the best trained MSE over m beside the optimal fit of the three-delta kernel by H heads.

    That fit is the MSE floor of a linear readout; an FFN readout can be nonlinear in the head outputs, so
    for it the number is a reference, not a bound. A learned bias has no fixed shape: one head with weight
    1/3 on each lag carries the sum exactly in the limit, so its floor is 0 for every H.
    """
    Hs, ms = grid_of(res)
    rows = []
    for H in Hs:
        row = [H]
        for rpe in RPES:
            got = [v for v in (res.value("val_loss", model__rpe=rpe, model__heads=H, model__ffn_width=m,
                                         model__attention="dp_free") for m in ms) if v is not None]
            row += [fmt(min(got)) if got else "—", "0" if rpe == "learned" else fmt(floor(SUM_KERNEL_2B, rpe, H))]
        rows.append(row)
    header = ["H"] + [h for r in RPES for h in (f"{r}: trained, best m", f"{r}: linear-readout optimum")]
    return Table("2b: trained MSE against the optimal fit of the kernel 1{s in {952, 944, 901}} by H heads "
                 "(the floor of a linear readout; Var(y) = 3)", header, rows)


def floor_note_2b(res: Results) -> str:
    """Where the trained FFN model beats the linear-readout optimum, say so; else the largest gap."""
    Hs, ms = grid_of(res)
    beat, gaps = [], []
    for rpe in ("lin", "log"):
        for H in Hs:
            got = [v for v in (res.value("val_loss", model__rpe=rpe, model__heads=H, model__ffn_width=m,
                                         model__attention="dp_free") for m in ms) if v is not None]
            if not got:
                continue
            fl = floor(SUM_KERNEL_2B, rpe, H)
            if min(got) < 0.9 * fl:
                beat.append(f"{rpe} H={H} ({fmt(min(got))} < {fmt(fl)})")
            gaps.append((min(got) / max(fl, 1e-12), rpe, H, fl))
    if beat:
        return (" The FFN readout beats the best linear readout at " + ", ".join(beat) +
                ": it uses the head outputs nonlinearly, which the linear floor does not allow for.")
    if not gaps:
        return ""
    worst = min(gaps)  # closest to the linear optimum
    return (f" lin and log cells stay at or above the best linear readout of their heads (closest: {worst[1]} "
            f"H={worst[2]} at {worst[0]:.3g}x its {fmt(worst[3])}), which itself stays near Var(y) = 3: their "
            "monotone kernels cannot single out lags near 900 (see head_scaling).")


def analyse_2b(res: Results):
    tables, ours, holds = gain_rule(res, "H_at_mmin", 100, "m_at_Hmax")
    detail = ("A learned per-distance bias lets one head spread its weight over the three lags, so the sum "
              "is within one head's reach; lin and log heads cannot isolate lags near 900 at all.")
    tables.append(linear_floor_table(res))
    detail += floor_note_2b(res)
    Hs, ms = grid_of(res)
    g = gains(res, "learned", Hs, ms)
    at_hmax = [res.value("val_rel", model__rpe="learned", model__heads=Hs[-1], model__ffn_width=m,
                         model__attention="dp_free") for m in (ms[0], ms[-1])]
    if all(v is not None and v <= 1e-5 for v in at_hmax) and g["m_at_Hmax"] is not None \
            and g["m_at_Hmax"].median >= 2:
        detail += (f" At H = {Hs[-1]} both widths are solved (relative MSE {fmt(at_hmax[0])} and {fmt(at_hmax[1])}): "
                   "a ratio of two errors this small is run-to-run noise, not a width effect.")
    return tables, Verdict(holds, ours, detail)


EXP_2A = Experiment(
    name="2a", title="FFN width serves a complex readout",
    insight="(2a) FFNs approximate the readout: a complex readout needs a wider FFN (raise m).",
    paper="f = sum_{k=1}^{64} relu(w_k x_99): raising m takes MSE 0.49 -> 0.002; raising H gives no gain.",
    rule="raising m at the largest H cuts MSE >= 10x, and raising H at the largest m cuts it < 2x",
    specs=specs_2a, analyse=analyse_2a,
    figure=lambda res, path: hm_figure(boolean_only(res), path, "2a: relu readout of lag 901"),
)

EXP_2B = Experiment(
    name="2b", title="Heads serve more memories",
    insight="(2b) Attention extracts memory tokens: more memories need more heads (raise H).",
    paper="f = x_48 + x_56 + x_99: raising H takes MSE 1.16 -> 1e-6; raising m gives no gain.",
    rule="raising H at the smallest m cuts MSE >= 100x, and raising m at the largest H cuts it < 2x",
    specs=hm_specs("2b", TASK_2B), analyse=analyse_2b,
    figure=lambda res, path: hm_figure(res, path, "2b: sum of lags 952, 944, 901"),
)


# -- 3a ------------------------------------------------------------------------
def specs_3a(profile: str):
    Hs, ms = grid_hm(profile)
    dp_H = Hs if profile == "paper" else [8, 32]
    dp_m = ms if profile == "paper" else [256]
    return [
        spec("3a", base(profile, TASK_1B, {}), {"model.rpe": RPES, "model.heads": Hs, "model.ffn_width": ms},
             seeds=seeds_of(profile)),
        spec("3a", base(profile, TASK_1B, {"attention": "dp"}),
             {"model.rpe": RPES, "model.heads": dp_H, "model.ffn_width": dp_m}, seeds=seeds_of(profile)),
    ]


def analyse_3a(res: Results):
    dp_cells = sorted({(r["config"]["model"]["heads"], r["config"]["model"]["ffn_width"])
                       for r in res.select(model__attention="dp")})
    rows, per, truths = [], [], []
    for rpe in RPES:
        frees = [res.spread("val_rel", model__rpe=rpe, model__attention="dp_free", model__heads=H,
                            model__ffn_width=m) for H, m in grid_pairs(res, "dp_free")]
        frees = [v for v in frees if v is not None]
        for H, m in dp_cells:
            a = res.value("val_rel", model__rpe=rpe, model__attention="dp_free", model__heads=H, model__ffn_width=m)
            b = res.value("val_rel", model__rpe=rpe, model__attention="dp", model__heads=H, model__ffn_width=m)
            rows.append([rpe, H, m, cell(res, model__rpe=rpe, model__attention="dp_free", model__heads=H,
                                         model__ffn_width=m),
                         cell(res, model__rpe=rpe, model__attention="dp", model__heads=H, model__ffn_width=m),
                         gain_text(ratio(a, b))])
        if not frees or not dp_cells:
            continue
        H, m = dp_cells[-1]
        a = res.spread("val_rel", model__rpe=rpe, model__attention="dp_free", model__heads=H, model__ffn_width=m)
        b = res.spread("val_rel", model__rpe=rpe, model__attention="dp", model__heads=H, model__ffn_width=m)
        if a is None or b is None:
            continue
        change = a / b
        truths.append(all_of(min_of(frees) <= 1e-2, change > 0.1, change < 10))
        per.append(f"{rpe}: DP-free best {fmt_spread(min_of(frees))}, at H={H}, m={m} DP-free {fmt_spread(a)} "
                   f"vs DP {fmt_spread(b)} (gain {gain_text(change)})")
    table = Table("1-layer, target of 1b: DP-free against DP, MSE (relative MSE); gain = DP-free / DP",
                  ["RPE", "H", "m", "DP-free", "DP", "gain from DP"], rows)
    detail = "DP-free cells are shared with experiment 1b (same configs, one run each)."
    if dp_cells:
        H, m = dp_cells[-1]
        a = res.value("val_rel", model__rpe="learned", model__attention="dp_free", model__heads=H, model__ffn_width=m)
        b = res.value("val_rel", model__rpe="learned", model__attention="dp", model__heads=H, model__ffn_width=m)
        if a is not None and b is not None and a <= 1e-2 and a >= 10 * b:
            detail += (f" DP-free reaches the target ({fmt(a)}), so DP is not needed to express it (the claim); "
                       f"but with the same steps DP gets further ({fmt(b)}): its query-dependent logits speed "
                       "up training here, which the rule's second half measures.")
        flat = [res.value("val_rel", model__rpe=r, model__attention=att, model__heads=H, model__ffn_width=m)
                for r in ("lin", "log") for att in ("dp_free", "dp")]
        if flat and all(v is not None and v >= 0.5 for v in flat):
            detail += " Under lin and log RPE neither model learns anything (relative MSE about 1), as in 1b."
    return [table], Verdict(any_of(*truths) if truths else None, "; ".join(per) or "no runs", detail)


def grid_pairs(res: Results, attention: str):
    return sorted({(r["config"]["model"]["heads"], r["config"]["model"]["ffn_width"])
                   for r in res.select(model__attention=attention)})


def figure_3a(res: Results, path: str) -> None:
    plt = pyplot()

    cells = grid_pairs(res, "dp")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / (2 * len(RPES))
    labels = [f"H={H}, m={m}" for H, m in cells]
    for k, rpe in enumerate(RPES):
        for j, att in enumerate(("dp_free", "dp")):
            vals = [res.value("val_rel", model__rpe=rpe, model__attention=att, model__heads=H, model__ffn_width=m)
                    for H, m in cells]
            xs = [i + (2 * k + j) * width for i in range(len(cells))]
            ax.bar(xs, [v if v is not None and math.isfinite(v) else 0 for v in vals], width,
                   label=f"{rpe} {'DP' if att == 'dp' else 'DP-free'}", hatch="//" if att == "dp" else None)
    ax.set_yscale("log")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cells))], labels)
    ax.set_ylabel("relative MSE")
    ax.set_title("3a: DP-free against DP on the 1b target")
    ax.legend(fontsize=7, ncol=3)
    save_figure(fig, path)


EXP_3A = Experiment(
    name="3a", title="DP is unnecessary for fixed memories",
    insight="(3a) Dot-product attention is not needed for Task I (fixed memory).",
    paper="Target of 1b: DP-free works at H = 32, m = 256; DP gains marginally.",
    rule="DP-free reaches relative MSE <= 1e-2, and adding DP at the largest (H, m) changes MSE < 10x",
    specs=specs_3a, analyse=analyse_3a, figure=figure_3a,
)


# -- 4a / 4b ---------------------------------------------------------------------
def kernel_spec(name: str, profile: str, kernels: list, rpes: list[str]):
    return spec(name, base(profile, {"kind": "kernel", "kernels": kernels[0]}, {"ffn_width": 0}),
                {"task.kernels": kernels, "model.rpe": rpes, "model.heads": heads_1d(profile)},
                seeds=seeds_of(profile))


@functools.lru_cache(maxsize=None)
def floor(kernel: str, rpe: str, heads: int, seq_len: int = T) -> float:
    """The optimal-fit MSE of `heads` DP-free heads of this RPE type (theory/fit.py)."""
    return _floors(kernel, rpe, seq_len)[heads - 1]


@functools.lru_cache(maxsize=None)
def _floors(kernel: str, rpe: str, seq_len: int) -> list[float]:
    from ..theory.fit import fit_heads, target_kernel

    return [f.l2 for f in fit_heads(target_kernel(kernel, seq_len), rpe, max(heads_1d("paper")))]


def kernel_table(res: Results, title: str, rpes: list[str], kernel: str, **where) -> Table:
    """Rows H; per RPE the trained MSE (relative) and the optimal-fit floor for the same H, RPE and T."""
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    rows = [[H] + [v for rpe in rpes for v in (cell(res, model__rpe=rpe, model__heads=H, **where),
                                                 fmt(floor(kernel, rpe, H)))] for H in Hs]
    header = ["H"] + [h for r in rpes for h in (f"{r} RPE, trained", f"{r} RPE, floor")]
    return Table(title + "; floor: the best any H heads can do (MSE, theory fit)", header, rows)


def floor_gap(res: Results, rpes: list[str], kernel: str, **where) -> str:
    """A sentence on trained MSE against the floor; flags a trained MSE below it."""
    below, gaps = [], []
    for rpe in rpes:
        for H in sorted({r["config"]["model"]["heads"] for r in res.rows}):
            got = res.value("val_loss", model__rpe=rpe, model__heads=H, **where)
            if got is None:
                continue
            fl = floor(kernel, rpe, H)
            if got < fl * 0.9 - 1e-12:  # 10% for the sampling error of the validation set
                below.append(f"{rpe} H={H}")
            gaps.append((got / max(fl, 1e-12), rpe, H))  # floors below 1e-12 are float noise
    if below:
        return f" Trained MSE below the optimal floor at {', '.join(below)}: a bug in the fit or the model."
    if not gaps:
        return ""
    worst = max(gaps)
    return (f" No trained cell beats its optimal floor; the largest optimization gap is {worst[1]} RPE at "
            f"H={worst[2]} ({worst[0]:.2g}x the floor, floors taken as at least 1e-12).")


def kernel_figure(res: Results, path: str, panels: list[tuple[str, dict]], rpes: list[str]) -> None:
    plt = pyplot()

    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, where) in zip(axes[0], panels):
        for rpe in rpes:
            vals = [res.spread("val_rel", model__rpe=rpe, model__heads=H, **where) for H in Hs]
            plot_known(ax, Hs, vals, "o-", f"{rpe} RPE")
        log_axes(ax, "heads H", "relative MSE", title)
    save_figure(fig, path)


def analyse_4a(res: Results):
    table = kernel_table(res, "rho(t) = t^-0.5: MSE (relative MSE), FFN-free, DP-free", ["log", "lin"], "power:0.5")
    log1 = res.spread("val_rel", model__rpe="log", model__heads=1)
    lin_best = min_of(res.spread("val_rel", model__rpe="lin", model__heads=H) for H in heads_1d("paper"))
    if log1 is None or lin_best is None:
        return [table], Verdict(None, "incomplete")
    holds = all_of(log1 <= 1e-4, lin_best >= 100 * log1)
    ours = (f"log, 1 head: {fmt_spread(log1)}; lin, best over H <= 64: {fmt_spread(lin_best)} "
            f"({gain_text(lin_best / log1)} worse)")
    detail = ("A log-RPE head's kernel is exactly a normalized power law, so one head represents t^-0.5; "
              "lin heads are sums of exponentials and need many heads for a heavy tail (Thm 5.1).")
    detail += floor_gap(res, ["log", "lin"], "power:0.5")
    return [table], Verdict(holds, ours, detail)


def analyse_4b(res: Results):
    tables, parts, verdicts = [], [], []
    for beta in ("5", "0.5"):
        where = {"task__kernels": [f"exp:{beta}"]}
        tables.append(kernel_table(res, f"rho(t) = exp(-{beta} t): MSE (relative MSE), FFN-free, DP-free",
                                   ["lin", "log"], f"exp:{beta}", **where))
        lin1 = res.spread("val_rel", model__rpe="lin", model__heads=1, **where)
        log_best = min_of(res.spread("val_rel", model__rpe="log", model__heads=H, **where)
                          for H in heads_1d("paper"))
        if lin1 is None or log_best is None:
            continue
        ok = all_of(lin1 <= 1e-5, log_best >= 10 * lin1)
        verdicts.append(ok)
        parts.append(f"beta={beta}: lin 1 head {fmt_spread(lin1)}, log best {fmt_spread(log_best)} "
                     f"({gain_text(log_best / lin1)} worse) -> {truth_label(ok)}")
    holds = verdicts[0] if verdicts else None  # the paper's beta = 5 decides; 0.5 is reported beside it
    detail = ("At beta = 5 the kernel is nearly a delta at lag 0 (rho(1) = 0.0067), which the residual path "
              "carries for every RPE type, so a log-RPE model only has to fit a tiny tail; beta = 0.5 tests "
              "the light-tail claim itself.")
    for beta in ("5", "0.5"):
        gap = floor_gap(Results(res.select(task__kernels=[f"exp:{beta}"])), ["lin", "log"], f"exp:{beta}")
        detail += f" beta = {beta}:{gap}" if gap else ""
    return tables, Verdict(holds, "; ".join(parts) or "incomplete", detail)


EXP_4A = Experiment(
    name="4a", title="Heavy-tailed memory wants log-type RPE",
    insight="(4a) Heavy-tailed memory: use log-type RPE (T5, KERPLE-log).",
    paper="f = sum_s x_s rho(1000 - s), rho(t) = t^-0.5: log RPE, 1 head: < 1e-5; lin RPE, up to 64 heads: 0.19.",
    rule="log RPE with 1 head reaches relative MSE <= 1e-4, and lin RPE's best over H <= 64 is >= 100x worse",
    specs=lambda p: [kernel_spec("4a", p, [["power:0.5"]], ["log", "lin"])],
    analyse=analyse_4a,
    figure=lambda res, path: kernel_figure(res, path, [("rho(t) = t^-0.5", {})], ["log", "lin"]),
    notes="rho(0) = 0 for the power kernel (lags 1..999).",
)

EXP_4B = Experiment(
    name="4b", title="Light-tailed memory wants lin-type RPE",
    insight="(4b) Light-tailed memory: use lin-type RPE (Alibi).",
    paper="Same with rho(t) = e^{-5t}: lin RPE, 1 head: < 1e-7; log RPE, up to 64 heads: 5.3e-4.",
    rule="lin RPE with 1 head reaches relative MSE <= 1e-5, and log RPE's best over H <= 64 is >= 10x worse "
         "(judged at the paper's beta = 5; beta = 0.5 reported beside it)",
    specs=lambda p: [kernel_spec("4b", p, [["exp:5"], ["exp:0.5"]], ["lin", "log"])],
    analyse=analyse_4b,
    figure=lambda res, path: kernel_figure(
        res, path, [("rho(t) = exp(-5t)", {"task__kernels": ["exp:5"]}),
                    ("rho(t) = exp(-0.5t)", {"task__kernels": ["exp:0.5"]})], ["lin", "log"]),
)
