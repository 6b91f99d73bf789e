"""Experiment analysis and the report, rebuilt from a small store."""

import importlib
import re
import subprocess
import sys

import pytest
import torch

from sparsemem.experiments import EXPERIMENTS, expand_all
from sparsemem.experiments.settle import paper_steps
from sparsemem.report import build_report
from sparsemem.sweep import Store


def fill(store, name, value_of, corpus=None):
    """Register an experiment's quick runs, each set to the paper profile's steps (so that no cell is
    budget-limited, settle.py), and finish each with val_rel = value_of(config)."""
    steps = paper_steps(EXPERIMENTS[name])
    runs = expand_all(EXPERIMENTS[name].make_specs("quick", corpus))
    if steps is not None:
        runs = [c.model_copy(update={"train": c.train.model_copy(update={"steps": steps})}) for c in runs]
    store.add(name, [(c.config_hash(), c.name, c.to_dict()) for c in runs])
    for c in runs:
        v = value_of(c)
        lengths = {str(n): {"val_rel": 2 * v, "val_loss": 4 * v} for n in c.train.eval_lengths}
        store.finish(
            c.config_hash(), {"status": "done", "val_rel": v, "val_loss": 2 * v, "steps": 1, "length_eval": lengths}
        )
    return runs


def fake_4a(log1, lin_best):
    def value_of(c):
        if c.model.rpe == "log":
            return log1 if c.model.heads == 1 else 1e-3
        return lin_best * (64 / c.model.heads)

    return value_of


@pytest.mark.parametrize("log1,lin_best,holds", [(1e-6, 1e-3, True), (1e-6, 1e-8, False), (1e-3, 1.0, False)])
def test_4a_verdict_follows_the_rule(tmp_path, log1, lin_best, holds):
    with Store(tmp_path / "r.db") as store:
        fill(store, "4a", fake_4a(log1, lin_best))
    verdicts = build_report(tmp_path / "r.db", tmp_path / "out")
    assert verdicts["4a"].holds is holds


def test_report_rebuilds_from_store_alone(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.set_meta(profile="quick", command="sparsemem reproduce 4a 2b")
        fill(store, "4a", fake_4a(1e-7, 1e-2))
        fill(store, "2b", lambda c: 1e-1 / c.model.heads if c.model.rpe == "learned" else 1.0)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "sparsemem", "report", "--store", str(tmp_path / "r.db"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = (out / "REPORT.md").read_text()
    assert "| 4a |" in report and "| 2b |" in report and "**holds**" in report
    assert "sparsemem reproduce 4a 2b" in report
    for name in ("4a", "2b"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert (out / "tables" / f"{name}.md").exists() and (out / "tables" / f"{name}_1.csv").exists()
    first = (out / "tables" / "2b.md").read_text()
    # the 2b table in the paper's layout: rows H, columns m, per RPE
    assert "H \\ m" in first and "RPE learned" in first
    # rebuilding gives the same tables
    (out / "tables" / "2b.md").unlink()
    build_report(tmp_path / "r.db", out)
    assert (out / "tables" / "2b.md").read_text() == first
    # 2b: H 1 -> 32 lowers the error at every pairing under learned only (lin and log unlearned: a tie)
    assert "**holds outside the paper's class (learned)" in report  # the variant's outcome may follow


def test_every_experiment_analyses_an_empty_and_a_full_store(tmp_path):
    with Store(tmp_path / "r.db") as store:
        # an experiment that trains nothing (head_scaling: computed only) is read by test_scaling
        trained = {name for name in EXPERIMENTS if fill(store, name, lambda c: 0.01, corpus=str(tmp_path))}
    verdicts = build_report(tmp_path / "r.db", tmp_path / "out")
    assert set(verdicts) == trained
    assert all(v.holds is not None for v in verdicts.values() if v.judged)
    assert [n for n, v in verdicts.items() if not v.judged] == ["forensics"]  # a table, no claim


def test_length_generalization_reads_the_longer_evaluations(tmp_path):
    with Store(tmp_path / "r.db") as store:
        fill(store, "length_gen", lambda c: 1e-3 if c.model.rpe == "log" else 1e-2)
    verdicts = build_report(tmp_path / "r.db", tmp_path / "out")
    assert verdicts["length_gen"].holds is True
    table = (tmp_path / "out" / "tables" / "length_gen.md").read_text()
    assert "| log | 1.00e-03 | 2.00e-03 | 2.00e-03 |" in table


def test_report_cli_bad_store(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsemem",
            "report",
            "--store",
            str(tmp_path / "nope.db"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--store" in proc.stderr and not (tmp_path / "o").exists()


def test_reproduce_cli_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sparsemem", "reproduce", "9z", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "9z" in proc.stderr and not (tmp_path / "o").exists()
    bad_device = ["tpu"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in bad_device:
        proc = subprocess.run(
            [sys.executable, "-m", "sparsemem", "reproduce", "4a", "--device", device, "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--device" in proc.stderr
        assert not (tmp_path / "o").exists()


def test_curse_of_memory_counts_the_fewest_states_and_heads(tmp_path):
    def value_of(c):
        heavy = c.task.kernels[0].startswith("power")
        if c.model.arch == "linear_rnn":
            return 1e-4 if c.model.hidden >= (8 if heavy else 1) else 1e-1
        if c.model.rpe == "log":
            return 1e-4 if heavy else 1e-1
        return 1e-4 if c.model.heads >= (4 if heavy else 1) else 1e-1

    with Store(tmp_path / "r.db") as store:
        fill(store, "curse_of_memory", value_of)
    verdicts = build_report(tmp_path / "r.db", tmp_path / "out")
    assert verdicts["curse_of_memory"].holds is True
    table = (tmp_path / "out" / "tables" / "curse_of_memory.md").read_text()
    assert "| power:0.5 | 1024 | 8 | 4 | 4 | 4 | 1 | 1 |" in table
    assert "| exp:0.5 | 64 | 1 | 1 | 1 | 1 | > 8 | 3 |" in table


def test_reproduce_groups_expand(tmp_path, monkeypatch):
    rep = importlib.import_module("sparsemem.reproduce")  # the module: sm.reproduce is the function

    seen = {}

    def fake_run_sweep(runs, store, sweep, **kw):
        seen["n"] = len(runs)
        return {"total": len(runs), "skipped": len(runs), "done": 0, "diverged": 0, "failed": 0}

    monkeypatch.setattr(rep, "run_sweep", fake_run_sweep)
    monkeypatch.setattr(rep, "build_report", lambda *a, **k: {})
    monkeypatch.setattr(EXPERIMENTS["head_scaling"], "compute", lambda profile: {"profile": profile})
    rep.reproduce(["theory"], out=tmp_path / "o", progress=False)
    with Store(tmp_path / "o" / "results.db") as store:
        # head_scaling trains nothing: it is kept as computed data, not as runs
        assert store.sweeps() == ["2b", "4a", "4b", "curse_of_memory", "length_gen"]
        assert store.meta()["computed:head_scaling"] == {"profile": "quick"}
    assert seen["n"] == len(
        {
            c.config_hash()
            for n in ("2b", "4a", "4b", "curse_of_memory", "length_gen")
            for c in expand_all(EXPERIMENTS[n].make_specs("quick"))
        }
    )


def test_2b_shows_the_linear_readout_optimum_and_flags_an_ffn_that_beats_it(tmp_path):
    # lin at H = 1 trained to MSE 1.0, well below what any linear readout of one lin head can do (about 3)
    from sparsemem.experiments.floors import FloorSpec, compute_rows
    from sparsemem.experiments.heads_width import SUM_KERNEL_2B

    with Store(tmp_path / "r.db") as store:
        fill(store, "2b", lambda c: 0.5 if (c.model.rpe, c.model.heads) == ("lin", 1) else 1.5)
        # the floors reproduce computes and stores (here for H = 1 only); the report reads them
        store.add_computed("2b", compute_rows([FloorSpec("kernel", SUM_KERNEL_2B, r, 1, 1000) for r in ("lin", "log")]))
    verdicts = build_report(tmp_path / "r.db", tmp_path / "out")
    table = (tmp_path / "out" / "tables" / "2b.md").read_text()
    assert "lin: floor" in table and "learned: floor" in table and "lin±: trained, best m" in table
    row = next(line for line in table.splitlines() if line.startswith("| 1 |") and "2.9" in line)
    assert row.count("2.9") == 2  # lin and log optima near Var(y) = 3 with one head
    assert "beats the best linear readout at lin H=1" in verdicts["2b"].detail
    assert "log H=1" not in verdicts["2b"].detail  # log trained to 3.0: above its optimum


@pytest.mark.parametrize(
    "profile,device,want",
    [
        ("auto", "cpu", "quick"),
        ("auto", "cuda", "paper"),
        ("auto", "cuda:1", "paper"),
        ("quick", "cuda", "quick"),
        ("paper", "cpu", "paper"),
    ],
)
def test_profile_auto_is_the_paper_on_cuda_and_quick_elsewhere(profile, device, want):
    from sparsemem.reproduce import resolve_profile

    got, why = resolve_profile(profile, device)
    assert got == want and (why.startswith("auto: ") == (profile == "auto")) and (device in why or profile != "auto")


def test_reproduce_by_default_says_which_profile_ran_and_why(tmp_path, monkeypatch):
    """On this CPU machine the default (--profile auto, --device auto) is the quick profile on cpu, with the
    same config hashes as --device cpu; the store and the report's head say so."""
    rep = importlib.import_module("sparsemem.reproduce")  # the module: sm.reproduce is the function

    hashes = {}

    def fake_run_sweep(runs, store, sweep, **kw):
        hashes["got"] = {c.config_hash() for c in runs}
        return {"total": len(runs), "skipped": len(runs), "done": 0, "diverged": 0, "failed": 0}

    monkeypatch.setattr(rep, "run_sweep", fake_run_sweep)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rep.reproduce(["4a"], out=tmp_path / "o", progress=False)
    with Store(tmp_path / "o" / "results.db", readonly=True) as store:
        meta = store.meta()
    assert meta["profile"] == "quick" and meta["profile_reason"].startswith("auto: the runs go to cpu")
    assert hashes["got"] == {c.config_hash() for c in expand_all(EXPERIMENTS["4a"].make_specs("quick"))}
    head = (tmp_path / "o" / "REPORT.md").read_text().splitlines()[2]
    assert head.startswith("Profile **quick** (auto: the runs go to cpu")


def test_reproduce_stores_the_floors_and_report_only_reads_them(tmp_path, monkeypatch):
    """reproduce fits each experiment's floors once into the store's computed table; a second pass finds
    them there; report formats them without fitting (the fit is made to fail while it runs)."""
    from sparsemem.experiments import floors

    specs = [floors.FloorSpec("kernel", "power:0.5", r, 3, 60) for r in ("lin", "log")]
    with Store(tmp_path / "r.db") as store:
        fill(store, "4a", fake_4a(1e-6, 1e-3))
        assert floors.missing(specs, store.computed("4a")) == specs
        store.add_computed("4a", floors.compute_rows(specs))
        assert floors.missing(specs, store.computed("4a")) == []
        assert store.computed("2b") == []
        rows = store.computed("4a")
    assert len(rows) == 6 and rows[0]["heads"] == 1 and rows[1]["heads"] == 2
    assert [r["value"] for r in rows[:3]] == pytest.approx(list(floors.floor_values(specs[0])))

    def no_fits(*a, **k):
        raise AssertionError("report fitted a floor")

    monkeypatch.setattr("sparsemem.theory.fit.fit_heads", no_fits)
    monkeypatch.setattr(floors, "floor_values", no_fits)
    build_report(tmp_path / "r.db", tmp_path / "out")
    table = (tmp_path / "out" / "tables" / "4a.md").read_text()
    row2 = next(line for line in table.splitlines() if line.startswith("| 2 |"))
    assert f"{rows[1]['value']:.2e}"[:4] in row2 or f"{rows[1]['value']:.3g}" in row2


@pytest.mark.parametrize(
    "dp_at,free_at,want",
    [
        # DP faster at every pairing, DP-free gets there: one cell at the eval resolution cannot confirm
        ((500, 500), (1500, 2000), "consistent with it (one cell, read at the 500-step evaluation interval)"),
        ((500, 500), (None, None), "refuted"),  # DP-free never reaches the bar
        ((500, 1500), (1000, 2000), "inconclusive"),  # the seeds disagree
    ],
)
def test_3a_diagnostic_reads_steps_to_the_bar_from_the_stored_curves(tmp_path, dp_at, free_at, want):
    """Each run's validation curve (kept in the store) gives the steps it needs to reach relative MSE 1e-2."""
    runs = expand_all(EXPERIMENTS["3a"].make_specs("quick"))
    with Store(tmp_path / "r.db") as store:
        store.add("3a", [(c.config_hash(), c.name, c.to_dict()) for c in runs])
        for c in runs:
            reach = (dp_at if c.model.attention == "dp" else free_at)[c.train.seed]
            if c.model.rpe != "learned":
                reach = None
            curve = [[s, 1e-3 if reach is not None and s >= reach else 0.5] for s in range(500, 2001, 500)]
            store.finish(
                c.config_hash(),
                {"status": "done", "val_rel": curve[-1][1], "val_loss": curve[-1][1], "steps": 2000, "curve": curve},
            )
    verdicts = build_report(tmp_path / "r.db", tmp_path / "out")
    diag = verdicts["3a"].diagnostic
    assert diag.endswith(want), diag
    table = (tmp_path / "out" / "tables" / "3a.md").read_text()
    assert "DP-free: steps" in table and "never" in table  # lin and log never reach the bar here
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert f"- Diagnostic: {diag}" in report


QUICK_1A: list = []


@pytest.mark.parametrize(
    "heads24,tmx,heads_said,tmx_said",
    [
        (0.5, 0.95, "+heads as predicted at 5 of 5 lag bounds", "no setting of 9 (lr x p init) trained any arm"),
        (1e-3, 0.3, "+heads as predicted at 4 of 5 lag bounds (bounds 4, 8, 16, 63)", "TMX: best setting per arm base"),
    ],
)
def test_1a_diagnostic_against_the_oracle_floors(tmp_path, monkeypatch, heads24, tmx, heads_said, tmx_said):
    """The lag sweep is read against the stored oracle floors, seed by seed: +heads solves where its
    fixed-lag floor is 0 and stays at or above half of it elsewhere; a +heads cell far below its floor
    breaks the prediction at that bound. A TMX arm in which no setting trained is not counted. The
    float64 construction's table and sentence come from the stored computation (learned RPE only here:
    the lin one fits 8 heads to each of 17 lags, minutes)."""
    from sparsemem.experiments import nested_construction
    from sparsemem.experiments.depth_lags import compute

    if not QUICK_1A:  # the floors and the construction, once for both cases (half a minute)
        monkeypatch.setattr(nested_construction, "CONSTRUCTION_RPES", {"learned": 1})
        QUICK_1A.append(compute("quick"))

    def value_of(c):
        if c.task.input.kind != "discrete":
            return 1e-6
        if c.model.attention == "tmx":
            return tmx if c.train.lr == 1e-3 else 0.95
        bound = c.task.lags[0]
        if c.model.layers == 2:
            return 0.01
        if c.model.heads == 8:
            return 1e-6 if bound <= 8 else (heads24 if bound == 24 else 0.5)
        return 0.9  # base and +width: above every 2-head floor

    with Store(tmp_path / "r.db") as store:
        fill(store, "1a_synthetic", value_of)
        store.set_meta(**{"computed:1a_synthetic": QUICK_1A[0]})
    verdict = build_report(tmp_path / "r.db", tmp_path / "out")["1a_synthetic"]
    lag_line, tmx_line = verdict.diagnostic.split("\n")
    assert heads_said in lag_line, lag_line
    assert "+width at 5 of 5 lag bounds" in lag_line and "+layer below the +heads floor at 3 of 3" in lag_line
    assert tmx_said in tmx_line, tmx_line
    assert "0 [0, 0] at H = 8" in verdict.detail  # the main task: 8 heads read every lag a memory takes
    table = (tmp_path / "out" / "tables" / "1a_synthetic.md").read_text()
    assert "fixed-lag floor, H = 8" in table and "normalization-free TMX arm" in table
    assert "Construction (float64" in table and "| learned | 1 | 2 |" in table
    said = re.search(r"reaches relative MSE (\S+) (\[.*?\] )?with learned RPE", verdict.detail)
    assert said and float(said.group(1)) < 1e-12
    assert "two layers express this task to round-off with the trained models' RPE" in verdict.detail


def test_computed_data_of_an_older_release_is_computed_again(tmp_path, monkeypatch):
    """A store whose computed data lacks a key the experiment now computes (the 1a construction, added
    later) gets it on the next reproduce; complete data is not computed twice."""
    import dataclasses

    reproduce = importlib.import_module("sparsemem.reproduce")  # the package's `reproduce` is the function
    calls = []
    exp = dataclasses.replace(
        EXPERIMENTS["1a_synthetic"],
        compute=lambda p: calls.append(p) or {"heads": [8], "floors": {}, "construction": {}},
    )
    monkeypatch.setitem(reproduce.EXPERIMENTS, "1a_synthetic", exp)
    with Store(tmp_path / "r.db") as store:
        store.set_meta(**{"computed:1a_synthetic": {"heads": [8], "floors": {}}})
        for _ in range(2):
            reproduce.compute_extras(store, ["1a_synthetic"], {"1a_synthetic": []}, "quick", [], False)
        assert calls == ["quick"] and "construction" in store.meta()["computed:1a_synthetic"]


@pytest.mark.parametrize("free,want", [(0.6, "stay above it"), (0.3, "BELOW it: a bug")])
def test_3b_sets_dp_free_models_against_the_stored_linear_floor(tmp_path, free, want):
    """3b's linear-predictor floor is computed into the store by reproduce (here by the same call) and read
    by the report; a DP-free model below it is flagged."""
    from sparsemem.experiments import floors

    with Store(tmp_path / "r.db") as store:
        fill(store, "3b_synthetic", lambda c: 1e-3 if c.model.attention == "dp" else free)
        verdict = build_report(tmp_path / "r.db", tmp_path / "a")["3b_synthetic"]
        assert "best linear predictor" not in verdict.detail  # no floor in the store yet: none shown
        store.add_computed("3b_synthetic", floors.compute_rows(EXPERIMENTS["3b_synthetic"].floors("quick")))
    verdict = build_report(tmp_path / "r.db", tmp_path / "b")["3b_synthetic"]
    assert "relative MSE 0.52" in verdict.detail and want in verdict.detail and verdict.holds is True


def test_verdicts_json_beside_the_report(tmp_path):
    """verdicts.json: per experiment the outcome with its reason and class, the rule's truth over seeds, its
    RPE scope, tau, testability, parts, the compared numbers with their range over seeds, direction and
    size beside the paper's, the paper's number and whether ours reproduces it; the summary table says the
    same."""
    import json

    with Store(tmp_path / "r.db") as store:
        fill(store, "4a", fake_4a(1e-7, 1e-4))
        fill(store, "2b", lambda c: 1e-1 / c.model.heads if c.model.rpe == "learned" else 1.0)
    build_report(tmp_path / "r.db", tmp_path / "out")
    data = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    four, two = data["experiments"]["4a"], data["experiments"]["2b"]
    # the paper's bar, MSE 1e-5, as a relative MSE: divided by Var(y) = sum_{s<1000} 1/s = 7.48 of t^-0.5
    assert four["verdict"] == "holds" and four["scope"] == "paper's RPE family: log"
    assert four["tau"] == pytest.approx(1e-5 / 7.4845, rel=1e-4)
    assert four["outcome"] == "holds" and [p["outcome"] for p in four["parts"]] == ["holds"] * 3
    assert four["size"]["median"] == pytest.approx(1e-4 / 1e-7) and four["paper_size"] == pytest.approx(0.19 / 1e-5)
    assert four["reproduced"] == "no"  # lin reaches MSE 2e-4 at H = 64, far below the paper's 0.19
    assert {c["name"] for c in four["compared"]} == {"log H=1", "lin H=1", "lin best"}
    assert all({"median", "lo", "hi", "seeds"} <= set(c) for c in four["compared"])
    assert two["outcome"] == "holds outside the paper's class" and two["rule_over_seeds"] == "holds"
    assert two["class"] == "outside the paper's class: learned" and two["testability"]["decidable"] is True
    assert two["paper_number"].startswith("MSE 1.16 -> 1e-6") and two["reproduced"] == "no"
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "| experiment | claim | outcome | why | paper's number | ours | size (paper's) | reproduced |" in report
    assert (
        "- Paper vs ours: " in report
        and "Seeds per cell: 2a" not in report
        and "4a 2 (steps 10000, validation 2000, seed s draws task s)" in report
    )
    assert "- Part: log, 1 head solves: **holds**" in report and "- Testability: " in report


def test_a_text_report_beside_the_paper_report_adds_its_rows(tmp_path):
    """A report gains summary rows, linked, for the experiments a text-profile report in a sibling folder
    judged; another profile's or a damaged verdicts.json adds nothing."""
    import json

    with Store(tmp_path / "r.db") as store:
        store.set_meta(profile="paper")
        fill(store, "4a", fake_4a(1e-7, 1e-4))
    entry = {"claim": "(3b) DP is needed", "verdict": "inconclusive", "scope": "lin RPE", "reproduced": "inconclusive"}
    entry |= {"paper_number": "5.796 vs 5.83", "ours_number": "L=1: 4.5 vs 4.6"}
    (tmp_path / "text-report").mkdir()
    (tmp_path / "text-report" / "verdicts.json").write_text(
        json.dumps({"profile": "text", "experiments": {"3b_text": entry, "4a": {"verdict": "x"}}})
    )
    (tmp_path / "quick-report").mkdir()
    (tmp_path / "quick-report" / "verdicts.json").write_text(
        json.dumps({"profile": "quick", "experiments": {"1b": {"verdict": "holds"}}})
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "verdicts.json").write_text("{not json")
    build_report(tmp_path / "r.db", tmp_path / "paper-report")
    head = (tmp_path / "paper-report" / "REPORT.md").read_text().split("\n## ")[0]
    rows = [line for line in head.splitlines() if line.startswith("| ")]
    assert rows[-1] == (
        "| 3b_text (text profile: [text-report](../text-report/REPORT.md)) | (3b) DP is needed | **inconclusive** "
        "| lin RPE | 5.796 vs 5.83 | L=1: 4.5 vs 4.6 | — | inconclusive |"
    )
    assert sum("text profile" in r for r in rows) == 1  # 4a is in this store; quick and broken add nothing
    assert rows[-2].startswith("| 4a |")
