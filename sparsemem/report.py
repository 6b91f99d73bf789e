"""Tables, figures and REPORT.md, all derived from a results store.

    sparsemem report --store DIR/results.db --out DIR

rebuilds everything from the store alone: each experiment's rows are the runs
registered under its name.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Optional, Union

from .config import hash_payload
from .experiments import EXPERIMENTS, Results, Verdict
from .experiments.base import train_settings
from .experiments.rules import tau_text
from .experiments.settle import paper_steps, settle
from .experiments.verdicts import fmt, fmt_spread, truth_label
from .files import atomic_write
from .sweep.store import Store

REPRODUCED = {True: "yes", False: "no", None: "—"}
RULES_LINE = (
    "A cell is solved when its relative MSE is at most the experiment's level tau for every seed; two "
    "solved cells tie, and no verdict rests on a ratio between them (experiments/rules.py)"
)


OUTCOMES_LINE = (
    "Each claim gets one of five outcomes (experiments/outcomes.py): holds (under an RPE of the paper's class), "
    "holds outside the paper's class (naming the RPE), does not hold, the task cannot decide it (its floors let "
    "the arm that should fail succeed; the outcome on a task that can decide it follows), or undecided (seeds "
    "disagree, the outcome turns on one seed, or a cell it rests on is still falling when its budget ends: "
    "experiments/settle.py). Direction is read over every pairing of seeds; the size is a ratio of medians with "
    "its range over pairings, beside the paper's own ratio."
)


SCOPE_LINE = (
    "What reruns the paper and what stands in for it: 1b, 2a, 2b, 3a, 4a and 4b rerun the paper's toy experiments "
    "(its tasks, T = 1000, 10,000 steps in the paper profile); 1a_synthetic and 3b_synthetic are synthetic Task II "
    "proxies for the paper's language-model runs (1a_text and 3b_text train small language models on a local "
    "corpus); length_gen and forensics are ours, not the paper's."
)


TEXT_METRIC_LINE = (
    "Metric: final validation cross-entropy (nats per token) on held-out text; a language model's tables show "
    "the median and range over seeds, its parameters, tokens seen and seconds."
)
TEXT_RULES_LINE = (
    "An arm beats another when its loss is lower for every pairing of their seeds, loses when it is not lower "
    "for any pairing, else the comparison is inconclusive (experiments/text.py)"
)


QUICK_LINE = (
    "The quick profile trains 2,000 steps where the paper's trains 10,000: a cell still above tau here may "
    "reach it with more steps, so every outcome that rests on an unsolved cell is undecided here (budget-limited, "
    "experiments/settle.py); what the quick profile decides is what rests on solved cells and on floors. It "
    "shows the pipeline end to end; the paper profile (docs/paper-report) answers the claims."
)


def seeds_line(found: dict) -> str:
    """Per experiment: seeds per cell, steps and validation samples its runs really used, and whether the
    seeds drew the task too (a store written before they did holds one task draw for every seed)."""
    parts = []
    for name, (_, res, _, _) in found.items():
        done = [r for r in res.rows if r["status"] in ("done", "diverged")]
        if not done:
            continue
        cells: dict = {}
        for r in done:
            cfg = hash_payload(r["config"])  # the same cell whichever version stored the row
            # a cell is a config up to its seed: train.seed, and task.seed where the seed draws the task
            unseeded = {part: {k: v for k, v in cfg.get(part, {}).items() if k != "seed"} for part in ("train", "task")}
            key = json.dumps({**cfg, **unseeded}, sort_keys=True)
            cells[key] = cells.get(key, 0) + 1
        steps = sorted({r["config"]["train"]["steps"] for r in done})
        vals = sorted({r["config"]["train"]["val_samples"] for r in done})
        counts = sorted(set(cells.values()))
        drawn = any(r["config"].get("task", {}).get("seed", 0) != r["config"]["train"]["seed"] for r in done)
        text = all(r["config"].get("task", {}).get("kind") == "text" for r in done)
        draws = (
            "the same held-out windows for every seed" if text else "one task draw" if drawn else "seed s draws task s"
        )
        parts.append(
            f"{name} {'/'.join(map(str, counts))} (steps {'/'.join(map(str, steps))}, "
            f"validation {'/'.join(map(str, vals))}, {draws})"
        )
    return "; ".join(parts) or "none"


def span_text(found: dict) -> str:
    """From the first run's start to the last run's finish, over every leg that trained the store."""
    rows = [r for _, res, _, _ in found.values() for r in res.rows if r.get("created") and r.get("updated")]
    if not rows:
        return ""
    span = max(r["updated"] for r in rows) - min(r["created"] for r in rows)
    return f"; its runs span {span / 3600:.1f} h from the first start to the last finish"


def verdicts_json(found: dict, profile: str) -> str:
    """Per experiment and claim: verdict, scope, tau, compared numbers, the paper's number, reproduced."""
    out = {"profile": profile, "experiments": {}}
    for name, (exp, _, _, verdict) in found.items():
        out["experiments"][name] = {"claim": exp.insight, "paper": exp.paper, "rule": exp.rule, **verdict.record()}
    return json.dumps(out, indent=2, allow_nan=False, default=str) + "\n"


def _write(path: Path, text: str) -> None:
    atomic_write(path, text)


def analyse(store: Store, names: Optional[list[str]] = None) -> dict:
    """{name: (experiment, results, tables, verdict)} for the experiments in the store."""
    present = set(store.sweeps())
    meta = store.meta()
    out = {}
    for name, exp in EXPERIMENTS.items():
        computed = meta.get(f"computed:{name}")
        if (name not in present and computed is None) or (names and name not in names):
            continue
        res = Results(store.rows(sweep=name), computed, store.computed(name))
        res.budget = paper_steps(exp)
        tables, verdict = exp.analyse(res)
        out[name] = (exp, res, tables, settle(exp, res, verdict))
    return out


def build_report(
    store_path: Union[str, Path], out_dir: Union[str, Path], names: Optional[list[str]] = None
) -> dict[str, Verdict]:
    """Write tables/, figures/, REPORT.md and verdicts.json into out_dir; return the verdicts."""
    from .config import ConfigError
    from .files import check_writable_dir

    out = Path(out_dir)
    with Store(store_path, readonly=True) as store:  # never creates or changes the store
        meta = store.meta()
        found = analyse(store, names)
        counts = store.counts()
        failed = store.rows(status=["failed"])
    check_writable_dir(out, "--out", ConfigError)  # only after the store read well: a bad store leaves no folders
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    profile = meta.get("profile", "unknown")
    sections = [section(name, *entry, out, profile, meta) for name, entry in found.items()]
    rebuild = f"`sparsemem report --store {store_path} --out {out_dir}`"
    header = header_lines(found, meta, counts, profile, Path(store_path).name, rebuild)
    header += companion_rows(out, found) if profile != "text" else []
    if failed:
        header += ["", f"{len(failed)} runs failed; first error lines:"]
        header += [f"- `{r['name']}`: {(r['error'] or '').strip().splitlines()[-1][:200]}" for r in failed[:10]]
    _write(out / "REPORT.md", "\n".join(header) + "\n\n" + "\n".join(sections))
    _write(out / "verdicts.json", verdicts_json(found, profile))
    return {name: verdict for name, (_, _, _, verdict) in found.items()}


def companion_rows(out: Path, found: dict) -> list[str]:
    """Summary rows for experiments this store lacks that a text-profile report beside ``out`` (a sibling
    folder holding a ``verdicts.json`` of profile text) judged, each linked to that report."""
    rows = []
    for sibling in sorted(p for p in out.resolve().parent.iterdir() if p.is_dir() and p != out.resolve()):
        try:
            data = json.loads((sibling / "verdicts.json").read_text())
            if data.get("profile") != "text":
                continue
            judged = {n: e for n, e in data["experiments"].items() if n not in found}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        link = f"[{sibling.name}](../{sibling.name}/REPORT.md)"
        for name, e in judged.items():
            rows.append(
                f"| {name} (text profile: {link}) | {e.get('claim', '')} | **{e.get('verdict', '?')}** | "
                f"{e.get('reason') or e.get('scope') or '—'} | {e.get('paper_number') or e.get('paper', '')} | "
                f"{e.get('ours_number') or e.get('ours', '')} | {_size_entry(e.get('size'), e.get('paper_size'))} | "
                f"{e.get('reproduced') or '—'} |"
            )
    return rows


def _size_entry(size, paper) -> str:
    """A size as verdicts.json stores it, in the summary table's words."""
    if not isinstance(size, dict) or size.get("median") is None:
        return "—"
    ends = f" [{fmt(size.get('lo'))}, {fmt(size.get('hi'))}]" if size.get("lo") != size.get("hi") else ""
    return f"{fmt(size['median'])}{ends}" + (f" (paper {fmt(paper)})" if isinstance(paper, (int, float)) else "")


def corpus_arg(exp, res) -> str:
    """`` --corpus NAME`` for an experiment that reads a corpus (the one its runs read), else nothing."""
    corpora = {r["config"].get("task", {}).get("corpus") for r in res.rows} - {None}
    return f" --corpus {sorted(corpora)[0]}" if getattr(exp, "needs_corpus", False) and corpora else ""


def section(name: str, exp, res, tables, verdict: Verdict, out: Path, profile: str, meta: dict) -> str:
    """One experiment's part of REPORT.md; writes its tables and figure."""
    _write(out / "tables" / f"{name}.md", "\n\n".join(t.markdown() for t in tables) + "\n")
    for k, t in enumerate(tables, 1):
        _write(out / "tables" / f"{name}_{k}.csv", t.csv())
    fig = out / "figures" / f"{name}.png"
    if res.rows or res.computed:
        exp.figure(res, str(fig))
    run_counts: dict = {}
    for row in res.rows:
        run_counts[row["status"]] = run_counts.get(row["status"], 0) + 1
    scope = f" (scope: {verdict.scope}; {tau_text(verdict.tau)})" if verdict.tau is not None else ""
    body = [
        f"## {name}: {exp.title}",
        "",
        f"- Claim: {exp.insight}",
        f"- Paper: {exp.paper}",
        f"- Rule: {exp.rule}.",
        f"- Ours: {verdict.ours}",
        f"- Outcome: **{verdict.label}**: {verdict.judgement()[1]}.",
    ]
    body += outcome_lines(verdict)
    body += [f"- Verdict of the rule over seeds: {truth_label(verdict.holds)}{scope}. {verdict.detail}"]
    body += [f"- Paper vs ours: {verdict.paper_vs_ours}"] if verdict.paper_vs_ours else []
    body += [f"- Diagnostic: {line}." for line in verdict.diagnostic.split("\n") if line]  # one line per diagnostic
    body += [f"- Notes: {exp.notes}"] if exp.notes else []
    body += [
        f"- Runs: {', '.join(f'{v} {k}' for k, v in sorted(run_counts.items())) or 'none (computed)'}",
        f"- Command: `sparsemem reproduce {name} --profile {profile}{corpus_arg(exp, res)} "
        f"--out {meta.get('out', 'DIR')}`",
        "",
    ]
    body += [t.markdown() + "\n" for t in tables]
    if fig.exists():
        body.append(f"![{name}](figures/{name}.png)\n")
    return "\n".join(body)


def size_text(verdict: Verdict) -> str:
    """The effect's size beside the paper's: '12 [3, 40] (paper 245)'."""
    if verdict.size is None:
        return "—"
    paper = f" (paper {fmt(verdict.paper_size)})" if verdict.paper_size is not None else ""
    return f"{fmt_spread(verdict.size)}{paper}"


def outcome_lines(verdict: Verdict) -> list[str]:
    """Testability, parts, the variant, direction and size under a section's outcome line."""
    lines = []
    t = verdict.testability
    if t is not None:
        can = {True: "can separate the arms", False: "cannot separate the arms", None: "not known (no floor)"}
        lines.append(
            f"- Testability: the arm that should fail is {t.should_fail}, the one that should succeed "
            f"{t.should_succeed}; the task {can[t.decidable]}: {t.reason}."
        )
    lines += [f"- Part: {p.name}: **{p.outcome}**: {p.reason}." for p in verdict.parts]
    if verdict.variant is not None:
        v = verdict.variant
        lines.append(f"- On the variant task, {v.name}: **{v.outcome}**: {v.reason}.")
    if verdict.direction:
        lines.append(f"- Direction: {verdict.direction}.")
    if verdict.size is not None:
        lines.append(f"- Size: {verdict.size_name}: {size_text(verdict)}.")
    return lines


def header_lines(found: dict, meta: dict, counts: dict, profile: str, store: str, rebuild: str) -> list[str]:
    """REPORT.md's head: what ran, how, the rules, and the summary table."""
    header = [
        "# sparsemem: reproduction of Wang and E (NeurIPS 2024), App. H.2",
        "",
        f"Profile **{profile}**"
        + (f" ({meta['profile_reason']})" if meta.get("profile_reason") else "")
        + f", built {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from `{store}` "
        f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)}).",
        f"Command: `{meta.get('command', 'sparsemem reproduce')}`; rebuild with {rebuild}.",
        f"Machine: {platform.machine()}, {meta.get('device', 'cpu')}, torch {meta.get('torch', '?')}; "
        f"sweep wall time {meta.get('seconds', '?')} s (summed over the reproduce calls into this store)"
        f"{span_text(found)}.",
        "",
        TEXT_METRIC_LINE
        if profile == "text"
        else "Metric: final validation MSE on a fixed validation set; verdict rules use relative MSE "
        "(MSE / Var(y)); tables show MSE (relative MSE).",
    ]
    if meta.get("overrides"):
        header += [
            "",
            f"**Overrides on every run: `{' '.join(meta['overrides'])}`.** The runs differ from the "
            f"{profile} profile's, so the verdicts below do not judge the paper's claims.",
        ]
    if profile in ("quick", "paper"):
        tr = train_settings(profile)
        header += [
            "",
            "One AdamW setting for every toy cell (the paper does not give its own): "
            + ", ".join(f"{k} {v}" for k, v in tr.items() if k not in ("steps", "val_samples", "eval_every"))
            + "; steps and validation samples per experiment as in the next line"
            + "; betas (0.9, 0.999), no weight decay, D = 64, T = 1000 for the toy experiments.",
        ]
    header += [
        "",
        "Seeds per cell: " + seeds_line(found) + ". " + (TEXT_RULES_LINE if profile == "text" else RULES_LINE),
    ]
    header += ["", QUICK_LINE] if profile == "quick" else []
    header += ["", OUTCOMES_LINE] + (["", SCOPE_LINE] if profile in ("quick", "paper") else [])
    header += ["", "| experiment | claim | outcome | why | paper's number | ours | size (paper's) | reproduced |"]
    header += ["|---|---|---|---|---|---|---|---|"]
    for name, (exp, _, _, verdict) in found.items():
        header.append(
            f"| {name} | {exp.insight} | **{verdict.label}** | {verdict.judgement()[1]} | "
            f"{verdict.paper_number or exp.paper} | {verdict.ours_number or verdict.ours} | {size_text(verdict)} | "
            f"{REPRODUCED.get(verdict.reproduced, 'over seeds: mixed')} |"
        )
    return header
