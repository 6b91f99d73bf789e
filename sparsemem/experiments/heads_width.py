"""Experiments 1b, 2a, 2b and 3a: one layer over a grid of heads H and FFN widths m (PAPER.md section 6).

The paper does not say which RPE these used. Each grid runs under lin, log and
a learned per-distance bias (the verdicts are judged over these three), and
beside them under lin and log with p free in sign (``lin±``, ``log±``:
model.rpe_sign = free, a variant outside the paper's family, whose kernels may
grow with the lag). Each RPE with a fixed kernel shape gets its optimal-fit
floor for the experiment's lags (experiments/floors.py) beside its trained
error.
"""

from __future__ import annotations

import math
from typing import Optional

from ..plotting import pyplot, save_figure
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
)
from .floors import FIT_LABELS, FloorSpec, lags_target
from .toy import LAG_1, LAGS_3, T, base, cell, fixed_task, gain_text

PAPER_RPES = ["lin", "log", "learned"]  # the verdicts are judged over these
VARIANTS = {"lin": {"model.rpe": "lin"}, "log": {"model.rpe": "log"}, "learned": {"model.rpe": "learned"},
            "lin±": {"model.rpe": "lin", "model.rpe_sign": "free"},
            "log±": {"model.rpe": "log", "model.rpe_sign": "free"}}
RPES = list(VARIANTS)


def rpe_where(label: str) -> dict:
    """The row filter of an RPE label (``lin``: p positive, as the paper's family; ``lin±``: sign free)."""
    case = VARIANTS[label]
    return {"model__rpe": case["model.rpe"], "model__rpe_sign": case.get("model.rpe_sign", "positive")}


def grid_hm(profile: str) -> tuple[list[int], list[int]]:
    if profile == "paper":
        return [1, 2, 4, 8, 16, 32, 64], [16, 64, 256]
    return [1, 8, 32], [16, 64, 256]


TASK_1B = fixed_task(LAGS_3, {"kind": "relu_net", "width": 64})
TASK_2A = fixed_task(LAG_1, {"kind": "relu_net", "width": 64})
TASK_2B = fixed_task(LAGS_3, "sum")


def hm_spec(name: str, profile: str, task: dict, model: Optional[dict] = None, rpes=RPES):
    Hs, ms = grid_hm(profile)
    return spec(name, base(profile, task, model or {}), {"model.heads": Hs, "model.ffn_width": ms},
                seeds=seeds_of(profile), cases=[VARIANTS[r] for r in rpes])


def floor_specs(quantity: str, target: str):
    """The floors of every fixed-shape RPE label for H up to the profile's largest."""
    def specs(profile: str) -> list[FloorSpec]:
        return [FloorSpec(quantity, target, rpe, grid_hm(profile)[0][-1], T) for rpe in FIT_LABELS]
    return specs


def value(res: Results, rpe: str, H: int, m: int, metric: str = "val_rel", attention: str = "dp_free"):
    return res.spread(metric, model__heads=H, model__ffn_width=m, model__attention=attention, **rpe_where(rpe))


def grid_of(res: Results) -> tuple[list[int], list[int]]:
    Hs = sorted({r["config"]["model"]["heads"] for r in res.rows})
    ms = sorted({r["config"]["model"]["ffn_width"] for r in res.rows})
    return Hs, ms


def hm_table(res: Results, rpe: str, Hs, ms, attention: str = "dp_free", title: str = "") -> Table:
    rows = [[H] + [cell(res, model__heads=H, model__ffn_width=m, model__attention=attention, **rpe_where(rpe))
                   for m in ms] for H in Hs]
    return Table(title or f"RPE {rpe}: final validation MSE (relative MSE), rows H, columns m",
                 ["H \\ m"] + [str(m) for m in ms], rows)


def hm_tables(res: Results, attention: str = "dp_free") -> list[Table]:
    Hs, ms = grid_of(res)
    return [hm_table(res, rpe, Hs, ms, attention) for rpe in RPES if res.select(**rpe_where(rpe))]


def learned_floor(quantity: str, target: str, H: int) -> float:
    """A learned bias's floor, in the limit of large biases: one head can put its weight on any set of lags,
    so a kernel with weights of one sign is one head's (0), and H heads read H of M lags' tokens apart:
    the mean extraction error is max(M - H, 0) / M."""
    if quantity == "extraction":
        M = len(target.removeprefix("lags:").split("+"))
        return max(M - H, 0) / M
    return 0.0


def floor_table(res: Results, quantity: str, target: str, title: str, metric: str = "val_rel") -> Table:
    """Per H: each RPE's best trained cell over m beside its optimal-fit floor for the same H."""
    Hs, ms = grid_of(res)
    rows = []
    for H in Hs:
        row = [H]
        for rpe in RPES:
            got = min_of(value(res, rpe, H, m, metric) for m in ms)
            fl = res.floor(quantity, target, rpe, H) if rpe in FIT_LABELS else learned_floor(quantity, target, H)
            row += [fmt_spread(got), fmt(fl)]
        rows.append(row)
    header = ["H"] + [h for r in RPES for h in (f"{r}: trained, best m", f"{r}: floor")]
    return Table(title, header, rows)


def hm_figure(res: Results, path: str, title: str, attention: str = "dp_free") -> None:
    plt = pyplot()

    Hs, ms = grid_of(res)
    rpes = [r for r in RPES if res.select(**rpe_where(r))]
    fig, axes = plt.subplots(1, len(rpes), figsize=(4.2 * len(rpes), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.35)
    im = None
    for ax, rpe in zip(axes[0], rpes):
        grid = [[res.value("val_rel", model__heads=H, model__ffn_width=m, model__attention=attention,
                           **rpe_where(rpe)) for m in ms] for H in Hs]
        vals = [[math.log10(max(v, 1e-12)) if v is not None and math.isfinite(v) else math.nan for v in row]
                for row in grid]
        im = ax.imshow(vals, origin="lower", cmap="viridis_r", vmin=-8, vmax=0.5, aspect="auto")
        ax.set_xticks(range(len(ms)), [str(m) for m in ms])
        ax.set_yticks(range(len(Hs)), [str(h) for h in Hs])
        ax.set_xlabel("FFN width m")
        ax.set_ylabel("heads H")
        ax.set_title(f"RPE {rpe}" + (" (p free in sign)" if rpe.endswith("±") else ""))
        for i, row in enumerate(vals):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w" if v > -4 else "k", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="log10 relative MSE (median over seeds)")
    fig.suptitle(title, y=1.03)
    save_figure(fig, path)


def gains(res: Results, rpe: str, Hs, ms) -> dict:
    """MSE ratios as Spreads over seeds: raising m at the largest H, raising H at the smallest and largest m;
    and the best cell."""
    v = lambda H, m: value(res, rpe, H, m)  # noqa: E731
    over = lambda a, b: None if a is None or b is None else a / b  # noqa: E731
    return {
        "m_at_Hmax": over(v(Hs[-1], ms[0]), v(Hs[-1], ms[-1])),
        "m_at_Hmin": over(v(Hs[0], ms[0]), v(Hs[0], ms[-1])),
        "H_at_mmax": over(v(Hs[0], ms[-1]), v(Hs[-1], ms[-1])),
        "H_at_mmin": over(v(Hs[0], ms[0]), v(Hs[-1], ms[0])),
        "best": min_of(v(H, m) for H in Hs for m in ms),
    }


def variants_line(res: Results) -> str:
    """One sentence on the sign-free variants: their best cells beside lin's and log's."""
    best = {r: gains(res, r, *grid_of(res))["best"] for r in RPES if res.select(**rpe_where(r))}
    if not any(r.endswith("±") for r in best):
        return ""
    return (" With p free in sign (a variant outside the paper's family), best relative MSE: " +
            ", ".join(f"{r} {fmt_spread(best[r])} (p > 0: {fmt_spread(best.get(r[:-1]))})"
                      for r in best if r.endswith("±")) + ".")


def paper_match(res: Results, rpes=RPES) -> str:
    """Which RPE, if any, reproduces the paper's reading 'raising H takes the error from about 1 to tiny':
    the smallest-H cell above 0.1 and the largest-H cell below 1e-4 in relative MSE, at some width."""
    Hs, ms = grid_of(res)
    found = []
    for rpe in rpes:
        for m in ms:
            lo, hi = value(res, rpe, Hs[-1], m), value(res, rpe, Hs[0], m)
            if lo is not None and hi is not None and hi.median >= 0.1 and lo.median <= 1e-4:
                found.append(rpe)
                break
    if found:
        return f" Only {', '.join(found)} reproduce{'s' if len(found) == 1 else ''} the paper's fall with H."
    return " No RPE reproduces the paper's fall with H."


# -- 1b ------------------------------------------------------------------------
def analyse_1b(res: Results):
    tables = hm_tables(res)
    tables.append(floor_table(res, "extraction", lags_target(LAGS_3),
                              "1b: best trained relative MSE over m beside the extraction floor of lags 952, 944, "
                              "901 (mean over the lags of the error of reading each token linearly from H heads; "
                              "1 = nothing read; learned: H heads read min(H, 3) of the tokens exactly, in the "
                              "limit of large biases). The floor is for a linear reading: an FFN can decode more "
                              "(one head with distinct weights on the three lags carries all three Boolean "
                              "tokens), so trained cells may sit below it"))
    best = {rpe: gains(res, rpe, *grid_of(res))["best"] for rpe in PAPER_RPES}
    known = [v for v in best.values() if v is not None]
    holds = None if not known else min_of(known) <= 1e-2
    ours = "best relative MSE per RPE: " + ", ".join(f"{k} {fmt_spread(v)}" for k, v in best.items())
    winners = [k for k, v in best.items() if v is not None and v.median <= 1e-2]
    detail = (f"Reached under {', '.join(winners)}." if winners else "No RPE reached it.") + \
        " lin and log heads have kernels monotone in the lag, so one head cannot isolate lags 901-952; " \
        "Thm 3.1 needs about e^(0.01 T) lin heads or T^1.01 log heads per memory there."
    detail += variants_line(res)
    return tables, Verdict(holds, ours, detail)


EXP_1B = Experiment(
    name="1b", title="Independent memories: one layer with enough H and m suffices",
    insight="(1b) For independent (fixed) memories a single layer with enough heads and FFN width suffices.",
    paper="1-layer DP-free, f = sum_{k=1}^{64} relu(w_k . (x_48, x_56, x_99)): H = 32, m = 256 suffice.",
    rule="the best 1-layer cell reaches relative MSE <= 1e-2 (under lin, log or learned RPE)",
    specs=lambda p: [hm_spec("1b", p, TASK_1B)], analyse=analyse_1b,
    figure=lambda res, path: hm_figure(res, path, "1b: relu readout of lags 952, 944, 901"),
    notes="The paper does not say which RPE it used; we run lin, log and learned (one bias per distance), "
          "and lin and log with p free in sign as a variant.",
    floors=floor_specs("extraction", lags_target(LAGS_3)),
)


# -- 2a / 2b -------------------------------------------------------------------
def gain_rule(res: Results, helps: str, needs: float, idle: str):
    """Per paper RPE: does raising `helps` cut MSE >= `needs`x while raising `idle` cuts it < 2x?

    `helps` and `idle` name a gain of ``gains``: m_at_Hmax, H_at_mmax, H_at_mmin. Returns the per-RPE text
    and whether the rule holds under some paper RPE (None: no runs); sign-free variants are reported
    in the text, outside the verdict.
    """
    Hs, ms = grid_of(res)
    where = {"m_at_Hmax": f"m {ms[0]}->{ms[-1]} at H={Hs[-1]}", "H_at_mmax": f"H {Hs[0]}->{Hs[-1]} at m={ms[-1]}",
             "H_at_mmin": f"H {Hs[0]}->{Hs[-1]} at m={ms[0]}"}
    per, truths = [], []
    for rpe in RPES:
        g = gains(res, rpe, Hs, ms)
        if g[helps] is None or g[idle] is None:
            continue
        if rpe in PAPER_RPES:
            truths.append(all_of(g[helps] >= needs, g[idle] < 2))
        per.append(f"{rpe}: {where[helps]} {gain_text(g[helps])}, {where[idle]} {gain_text(g[idle])}")
    return "; ".join(per) or "no runs", any_of(*truths) if truths else None


# 2a's diagnostic: the explanation of its verdict (a readout of one Boolean token is affine, so width cannot
# matter) predicts that with tokens uniform on [-1, 1], where f(x_99) = sum_k relu(w_k x_99) is genuinely
# nonlinear, raising m does cut the error. Same f, lag, grid of H and m and seeds; learned RPE, the one RPE
# whose heads can single out lag 901 (1b).
TASK_2A_UNIFORM = {**TASK_2A, "input": "uniform"}


def specs_2a(profile: str):
    return [hm_spec("2a", profile, TASK_2A), hm_spec("2a", profile, TASK_2A_UNIFORM, rpes=["learned"])]


def boolean_only(res: Results) -> Results:
    """The rows of the paper's setting (Rademacher tokens), without a diagnostic's."""
    return res.subset([r for r in res.rows if r["config"]["task"]["input"]["kind"] == "rademacher"])


def analyse_2a(res: Results):
    uniform = res.subset(res.select(task__input__kind="uniform"))
    res = boolean_only(res)
    ours, holds = gain_rule(res, "m_at_Hmax", 10, "H_at_mmax")
    tables = hm_tables(res)
    tables.append(floor_table(res, "extraction", lags_target(LAG_1),
                              "2a: best trained relative MSE over m beside the linear-readout floor of lag 901 "
                              "(the error of reading x_901 linearly from H heads; with Boolean tokens f is "
                              "affine in x_901, so this is the relative MSE of a linear readout)"))
    detail = ("With x in {+-1}, any f(x_99) is affine in x_99 (two points), so once a head extracts the lag "
              "the readout needs no width; the error left is the attention's, which more heads reduce.")
    detail += variants_line(res)
    diagnostic = ""
    if uniform.rows:
        Hs, ms = grid_of(uniform)
        tables.append(hm_table(uniform, "learned", Hs, ms, title=(
            "Diagnostic: the same target with tokens uniform on [-1, 1], learned RPE: MSE (relative MSE), "
            "rows H, columns m")))
        g = gains(uniform, "learned", Hs, ms)
        if g["m_at_Hmax"] is not None:
            confirmed = g["m_at_Hmax"] >= 10
            diagnostic = (f"the explanation predicts that with a nonlinear readout (tokens uniform on [-1, 1]) raising "
                          f"m cuts the error >= 10x (2a's bar); measured under learned RPE: m {ms[0]}->{ms[-1]} at "
                          f"H={Hs[-1]} cuts it {gain_text(g['m_at_Hmax'])} -> "
                          + {True: "confirmed", False: "refuted"}.get(confirmed, "inconclusive"))
    return tables, Verdict(holds, ours, detail, diagnostic)


SUM_KERNEL_2B = "deltas:" + "+".join(str(t) for t in LAGS_3)


def floor_note_2b(res: Results) -> str:
    """Where the trained FFN model beats the linear-readout optimum, say so; else the closest approach."""
    Hs, ms = grid_of(res)
    beat, gaps = [], []
    for rpe in FIT_LABELS:
        for H in Hs:
            got = min_of(value(res, rpe, H, m, "val_loss") for m in ms)
            fl = res.floor("kernel", SUM_KERNEL_2B, rpe, H)
            if got is None or fl is None:
                continue
            if got.median < 0.9 * fl:
                beat.append(f"{rpe} H={H} ({fmt(got.median)} < {fmt(fl)})")
            gaps.append((got.median / max(fl, 1e-12), rpe, H, fl))
    if beat:
        return (" The FFN readout beats the best linear readout at " + ", ".join(beat) +
                ": it uses the head outputs nonlinearly, which the linear floor does not allow for.")
    if not gaps:
        return ""
    closest = min(gaps)
    return (f" lin and log cells (either sign) stay at or above the best linear readout of their heads (closest: "
            f"{closest[1]} H={closest[2]} at {closest[0]:.3g}x its {fmt(closest[3])}), which itself stays near "
            "Var(y) = 3: their kernels cannot single out lags near 900 (see head_scaling).")


def analyse_2b(res: Results):
    ours, holds = gain_rule(res, "H_at_mmin", 100, "m_at_Hmax")
    tables = hm_tables(res)
    tables.append(floor_table(res, "kernel", SUM_KERNEL_2B,
                              "2b: best trained MSE over m against the optimal fit of the kernel 1{s in {952, 944, "
                              "901}} by H heads (the floor of a linear readout; Var(y) = 3; a learned bias carries "
                              "the sum with one head: 0, in the limit of large biases)", metric="val_loss"))
    detail = ("A learned per-distance bias lets one head spread its weight over the three lags, so the sum "
              "is within one head's reach; lin and log heads cannot isolate lags near 900 at all.")
    detail += floor_note_2b(res)
    Hs, ms = grid_of(res)
    g = gains(res, "learned", Hs, ms)
    at_hmax = [res.value("val_rel", model__heads=Hs[-1], model__ffn_width=m, model__attention="dp_free",
                         **rpe_where("learned")) for m in (ms[0], ms[-1])]
    if all(v is not None and v <= 1e-5 for v in at_hmax) and g["m_at_Hmax"] is not None \
            and g["m_at_Hmax"].median >= 2:
        detail += (f" At H = {Hs[-1]} both widths are solved (relative MSE {fmt(at_hmax[0])} and {fmt(at_hmax[1])}): "
                   "a ratio of two errors this small is run-to-run noise, not a width effect.")
    detail += variants_line(res) + paper_match(res)
    return tables, Verdict(holds, ours, detail)


EXP_2A = Experiment(
    name="2a", title="FFN width serves a complex readout",
    insight="(2a) FFNs approximate the readout: a complex readout needs a wider FFN (raise m).",
    paper="f = sum_{k=1}^{64} relu(w_k x_99): raising m takes MSE 0.49 -> 0.002; raising H gives no gain.",
    rule="raising m at the largest H cuts MSE >= 10x, and raising H at the largest m cuts it < 2x "
         "(under lin, log or learned RPE)",
    specs=specs_2a, analyse=analyse_2a,
    figure=lambda res, path: hm_figure(boolean_only(res), path, "2a: relu readout of lag 901"),
    floors=floor_specs("extraction", lags_target(LAG_1)),
)

EXP_2B = Experiment(
    name="2b", title="Heads serve more memories",
    insight="(2b) Attention extracts memory tokens: more memories need more heads (raise H).",
    paper="f = x_48 + x_56 + x_99: raising H takes MSE 1.16 -> 1e-6; raising m gives no gain.",
    rule="raising H at the smallest m cuts MSE >= 100x, and raising m at the largest H cuts it < 2x "
         "(under lin, log or learned RPE)",
    specs=lambda p: [hm_spec("2b", p, TASK_2B)], analyse=analyse_2b,
    figure=lambda res, path: hm_figure(res, path, "2b: sum of lags 952, 944, 901"),
    floors=floor_specs("kernel", SUM_KERNEL_2B),
)


# -- 3a ------------------------------------------------------------------------
STEPS_TO = 1e-2  # 3a's diagnostic: steps to this relative MSE (the rule's "DP-free reaches" bar)


def specs_3a(profile: str):
    Hs, ms = grid_hm(profile)
    dp_H = Hs if profile == "paper" else [8, 32]
    dp_m = ms if profile == "paper" else [256]
    return [hm_spec("3a", profile, TASK_1B, rpes=PAPER_RPES),
            spec("3a", base(profile, TASK_1B, {"attention": "dp"}),
                 {"model.rpe": PAPER_RPES, "model.heads": dp_H, "model.ffn_width": dp_m}, seeds=seeds_of(profile))]


def steps_to(res: Results, threshold: float = STEPS_TO, **where) -> Optional[Spread]:
    """Over seeds: the first evaluated step whose relative MSE is at most ``threshold`` (inf: never);
    None where the rows hold no curve (stores written before curves were kept)."""
    vals = []
    for row in res.select(**where):
        curve = row.get("metrics", {}).get("curve")
        if row["status"] not in ("done", "diverged") or curve is None:
            continue
        hit = [s for s, v in curve if isinstance(v, (int, float)) and v <= threshold]
        vals.append(float(hit[0]) if hit else math.inf)
    return Spread(vals) if vals else None


def fmt_steps(s: Optional[Spread]) -> str:
    if s is None:
        return "—"
    one = lambda x: "never" if math.isinf(x) else f"{x:.0f}"  # noqa: E731
    return one(s.median) if s.lo == s.hi else f"{one(s.median)} [{one(s.lo)}, {one(s.hi)}]"


def grid_pairs(res: Results, attention: str):
    return sorted({(r["config"]["model"]["heads"], r["config"]["model"]["ffn_width"])
                   for r in res.select(model__attention=attention)})


def diagnostic_3a(res: Results, H: int, m: int) -> str:
    """The explanation 'DP-free can express the target; DP only trains faster' predicts that, at the cell
    the rule compares, DP-free reaches relative MSE 1e-2 within the run and DP reaches it in fewer steps."""
    where = dict(model__heads=H, model__ffn_width=m, **rpe_where("learned"))
    free, dp = steps_to(res, model__attention="dp_free", **where), steps_to(res, model__attention="dp", **where)
    if free is None or dp is None:
        return ""
    reaches = free <= res.rows[0]["config"]["train"]["steps"]
    faster = dp < free
    outcome = all_of(reaches, faster)
    return (f"the explanation (DP-free can express the target; DP only trains faster) predicts that under learned "
            f"RPE at H={H}, m={m} DP-free reaches relative MSE {fmt(STEPS_TO)} within the run and DP reaches it in "
            f"fewer steps; measured steps to {fmt(STEPS_TO)} (first evaluation at or below): DP-free "
            f"{fmt_steps(free)}, DP {fmt_steps(dp)} -> "
            + {True: "confirmed", False: "refuted"}.get(outcome, "inconclusive"))


def analyse_3a(res: Results):
    dp_cells = grid_pairs(res, "dp")
    rows, per, truths = [], [], []
    for rpe in PAPER_RPES:
        frees = [v for v in (value(res, rpe, H, m) for H, m in grid_pairs(res, "dp_free")) if v is not None]
        for H, m in dp_cells:
            where = dict(model__heads=H, model__ffn_width=m, **rpe_where(rpe))
            a, b = value(res, rpe, H, m), value(res, rpe, H, m, attention="dp")
            rows.append([rpe, H, m, cell(res, model__attention="dp_free", **where),
                         cell(res, model__attention="dp", **where),
                         gain_text(ratio(a and a.median, b and b.median)),
                         fmt_steps(steps_to(res, model__attention="dp_free", **where)),
                         fmt_steps(steps_to(res, model__attention="dp", **where))])
        if not frees or not dp_cells:
            continue
        H, m = dp_cells[-1]
        a, b = value(res, rpe, H, m), value(res, rpe, H, m, attention="dp")
        if a is None or b is None:
            continue
        change = a / b
        truths.append(all_of(min_of(frees) <= 1e-2, change > 0.1, change < 10))
        per.append(f"{rpe}: DP-free best {fmt_spread(min_of(frees))}, at H={H}, m={m} DP-free {fmt_spread(a)} "
                   f"vs DP {fmt_spread(b)} (gain {gain_text(change)})")
    table = Table(f"1-layer, target of 1b: DP-free against DP, MSE (relative MSE); gain = DP-free / DP; steps to "
                  f"relative MSE {fmt(STEPS_TO)} (first evaluation at or below; median [range] over seeds)",
                  ["RPE", "H", "m", "DP-free", "DP", "gain from DP", "DP-free: steps", "DP: steps"], rows)
    detail = "DP-free cells are shared with experiment 1b (same configs, one run each)."
    diagnostic = ""
    if dp_cells:
        H, m = dp_cells[-1]
        a = res.value("val_rel", model__attention="dp_free", model__heads=H, model__ffn_width=m, **rpe_where("learned"))
        b = res.value("val_rel", model__attention="dp", model__heads=H, model__ffn_width=m, **rpe_where("learned"))
        if a is not None and b is not None and a <= 1e-2 and a >= 10 * b:
            detail += (f" DP-free reaches the target ({fmt(a)}), so DP is not needed to express it (the claim); "
                       f"but with the same steps DP gets further ({fmt(b)}): its query-dependent logits speed "
                       "up training here, which the rule's second half measures.")
        flat = [res.value("val_rel", model__attention=att, model__heads=H, model__ffn_width=m, **rpe_where(r))
                for r in ("lin", "log") for att in ("dp_free", "dp")]
        if flat and all(v is not None and v >= 0.5 for v in flat):
            detail += " Under lin and log RPE neither model learns anything (relative MSE about 1), as in 1b."
        diagnostic = diagnostic_3a(res, H, m)
    return [table], Verdict(any_of(*truths) if truths else None, "; ".join(per) or "no runs", detail, diagnostic)


def figure_3a(res: Results, path: str) -> None:
    """Final relative MSE per cell (bars) and, where curves are stored, the learned-RPE validation curves."""
    plt = pyplot()

    cells = grid_pairs(res, "dp")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / (2 * len(PAPER_RPES))
    labels = [f"H={H}, m={m}" for H, m in cells]
    for k, rpe in enumerate(PAPER_RPES):
        for j, att in enumerate(("dp_free", "dp")):
            vals = [value(res, rpe, H, m, attention=att) for H, m in cells]
            xs = [i + (2 * k + j) * width for i in range(len(cells))]
            med = [v.median if v is not None and math.isfinite(v.median) else 0 for v in vals]
            err = [[max(0.0, v.median - v.lo) if v is not None and math.isfinite(v.hi) else 0 for v in vals],
                   [max(0.0, v.hi - v.median) if v is not None and math.isfinite(v.hi) else 0 for v in vals]]
            ax.bar(xs, med, width, yerr=err, label=f"{rpe} {'DP' if att == 'dp' else 'DP-free'}",
                   hatch="//" if att == "dp" else None)
    ax.set_yscale("log")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cells))], labels)
    ax.set_ylabel("relative MSE (median, seed range)")
    ax.set_title("3a: DP-free against DP on the 1b target")
    ax.legend(fontsize=7, ncol=3)
    if cells:
        H, m = cells[-1]
        for att, style in (("dp_free", "-"), ("dp", "--")):
            for row in res.select(model__attention=att, model__heads=H, model__ffn_width=m, **rpe_where("learned")):
                curve = row.get("metrics", {}).get("curve") or []
                pts = [(s, v) for s, v in curve if isinstance(v, (int, float)) and v > 0]
                if pts:
                    ax2.plot(*zip(*pts), style, color="C0" if att == "dp_free" else "C3", alpha=0.8,
                             label=f"{'DP' if att == 'dp' else 'DP-free'}, seed {row['config']['train']['seed']}")
        ax2.axhline(STEPS_TO, color="gray", lw=0.8, ls=":")
        ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_ylabel("validation relative MSE")
        ax2.set_title(f"learned RPE, H={H}, m={m}: validation curves")
        if ax2.lines[:-1]:
            ax2.legend(fontsize=7)
    save_figure(fig, path)


EXP_3A = Experiment(
    name="3a", title="DP is unnecessary for fixed memories",
    insight="(3a) Dot-product attention is not needed for Task I (fixed memory).",
    paper="Target of 1b: DP-free works at H = 32, m = 256; DP gains marginally.",
    rule="DP-free reaches relative MSE <= 1e-2, and adding DP at the largest (H, m) changes MSE < 10x",
    specs=specs_3a, analyse=analyse_3a, figure=figure_3a,
)
