"""Results as data: DataFrames, CSV / Parquet export, and merging stores written on separate machines."""

import json
import sqlite3
import subprocess
import sys

import pytest

import sparsemem as sm
from sparsemem.cli import main
from sparsemem.sweep import Store, SweepSpec, run_sweep

pd = pytest.importorskip("pandas")

TINY = {
    "task": {"kind": "fixed", "lags": [1, 3], "seq_len": 8},
    "model": {"dim": 4, "ffn_width": 4, "heads": 2},
    "train": {"steps": 4, "batch_size": 4, "val_samples": 8, "eval_every": 2},
}


def _sweep(store_path, name="tiny", grid=None, seeds=(0,)):
    spec = SweepSpec(
        name=name, base=TINY, grid=grid or {"model.heads": [1, 2], "model.rpe": ["lin", "log"]}, seeds=list(seeds)
    )
    runs = spec.expand()
    with Store(store_path) as store:
        run_sweep(runs, store, name, runs_dir=store_path.parent / "runs", progress=False, fleet="off")
    return runs


def test_load_results_one_row_per_run_with_dotted_config_columns(tmp_path):
    db = tmp_path / "r.db"
    runs = _sweep(db)
    _sweep(db, name="again", grid={"model.heads": [2], "model.rpe": ["lin"]})  # one run asked for twice
    df = sm.load_results(db)
    assert len(df) == len(runs) == 4 and set(df["hash"]) == {c.config_hash() for c in runs}
    assert (df["status"] == "done").all() and df["val_loss"].notna().all() and (df["steps"] == 4).all()
    row = df.set_index("hash").loc[runs[0].config_hash()]
    assert row["model.heads"] == runs[0].model.heads and row["task.lags"] == (1, 3)
    assert row["task.readout.kind"] == runs[0].task.readout.kind and row["train.seed"] == 0
    assert str(df["created"].dtype).startswith("datetime64") and (df["seconds"] > 0).all()
    shared = df[(df["model.heads"] == 2) & (df["model.rpe"] == "lin")].iloc[0]
    assert shared["sweep"] == "tiny" and shared["sweeps"] == ("tiny", "again")
    assert "metrics.var_y" in df and "metrics.curve" not in df
    # groups a researcher would form: one median per RPE type
    assert set(df.groupby("model.rpe")["val_rel"].median().index) == {"lin", "log"}
    assert len(sm.load_results(db, sweep="again")) == 1 and len(sm.load_results(db, status=["failed"])) == 0
    curves = sm.load_curves(db)
    assert list(curves.columns) == ["hash", "name", "step", "val_loss"]
    assert sorted(curves.groupby("hash")["step"].apply(list).iloc[0]) == [2, 4] and len(curves) == 8


def test_load_results_of_an_empty_store_has_the_run_columns(tmp_path):
    with Store(tmp_path / "e.db"):
        pass
    df = sm.load_results(tmp_path / "e.db")
    assert df.empty and {"hash", "status", "val_loss", "sweeps"} <= set(df.columns)


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_export_writes_what_load_results_gives(tmp_path, ext, capsys):
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    db = tmp_path / "r.db"
    _sweep(db)
    out = tmp_path / "x" / f"runs.{ext}"
    assert main(["export", "--store", str(db), "--out", str(out)]) == 0
    assert "4 runs" in capsys.readouterr().out
    back = pd.read_csv(out) if ext == "csv" else pd.read_parquet(out)
    want = sm.load_results(db)
    assert list(back.columns) == list(want.columns) and len(back) == 4
    assert back["val_loss"].tolist() == pytest.approx(want["val_loss"].tolist(), rel=1e-12)
    assert [json.loads(v) for v in back["task.lags"]] == [[1, 3]] * 4  # lists as JSON text
    assert main(["export", "--store", str(db), "--out", str(tmp_path / f"c.{ext}"), "--curves"]) == 0
    assert len(pd.read_csv(tmp_path / "c.csv") if ext == "csv" else pd.read_parquet(tmp_path / "c.parquet")) == 8
    assert not list(out.parent.glob(".*partial"))


@pytest.mark.parametrize(
    "args, says",
    [
        (["--out", "{tmp}/x.xlsx"], "allowed: .csv, .parquet"),
        (["--out", "{tmp}"], "the format comes from the extension"),
        (["--out", "{tmp}/d.csv", "--store", "{tmp}/none.db"], "does not exist"),
        (["--out", "{tmp}/d.csv", "--store", "{tmp}/junk.db"], "is not a SQLite database"),
    ],
)
def test_export_bad_input_one_line_exit_2(tmp_path, args, says):
    (tmp_path / "junk.db").write_text("not a store")
    db = tmp_path / "r.db"
    with Store(db):
        pass
    args = [a.format(tmp=tmp_path) for a in args]
    if "--store" not in args:
        args += ["--store", str(db)]
    proc = subprocess.run([sys.executable, "-m", "sparsemem", "export", *args], capture_output=True, text=True)
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d.csv").exists() and not (tmp_path / "x.xlsx").exists()


# -- merge ------------------------------------------------------------------------------------------------
def _fake(store_path, sweep, rows):
    """A store holding runs with given statuses: rows are (config, status, val_loss, updated)."""
    with Store(store_path) as st:
        st.add(sweep, [(c.config_hash(), c.name, c.to_dict()) for c, *_ in rows])
        for c, status, loss, updated in rows:
            h = c.config_hash()
            if status in ("done", "diverged"):
                st.finish(h, {"status": status, "val_loss": loss, "steps": 4})
            elif status == "failed":
                st.fail(h, "boom")
            elif status == "running":
                st.claim([h], "elsewhere:1:x")
            st._db.execute("UPDATE runs SET updated = ? WHERE hash = ?", (updated, h))


def _cfg(heads):
    return sm.RunConfig.from_dict(TINY, [f"model.heads={heads}"])


def test_merge_keeps_every_run_once_finished_over_unfinished(tmp_path):
    a, b, c, d, e = (sm.RunConfig.from_dict(TINY, [f"train.seed={s}"]) for s in range(5))
    _fake(
        tmp_path / "A.db",
        "s",
        [
            (a, "done", 0.1, 10.0),
            (b, "pending", None, 11.0),
            (c, "failed", None, 12.0),
            (d, "done", 0.4, 20.0),
            (e, "running", None, 13.0),
        ],
    )
    _fake(
        tmp_path / "B.db",
        "s",
        [(a, "pending", None, 30.0), (b, "done", 0.2, 31.0), (c, "pending", None, 32.0), (d, "done", 0.5, 15.0)],
    )
    _fake(tmp_path / "C.db", "t", [(e, "diverged", None, 40.0)])
    with Store(tmp_path / "B.db") as st:
        st.add_computed("4a", [("floor", "power:0.5", "log", 1, 1e-3)])
        st.log_event(b.config_hash(), "healed", "on B")
    out = tmp_path / "ALL.db"
    assert main(["store", "merge", *(str(tmp_path / f"{n}.db") for n in "ABC"), "--out", str(out)]) == 0
    with Store(out, readonly=True) as st:
        rows = {r["hash"]: r for r in st.rows()}
        assert len(rows) == 5
        status = {h: (r["status"], r["val_loss"]) for h, r in rows.items()}
        assert status[a.config_hash()] == ("done", 0.1)  # finished on A, pending on B
        assert status[b.config_hash()] == ("done", 0.2)
        assert status[c.config_hash()] == ("failed", None)  # failed (with its error) over pending
        assert rows[c.config_hash()]["error"] == "boom"
        assert status[d.config_hash()] == ("done", 0.5)  # done on both: the first to finish (B, t = 15)
        assert status[e.config_hash()][0] == "diverged"  # running on A, diverged on C
        assert all(r["owner"] is None and r["lease"] is None for r in rows.values())
        assert set(st.sweeps()) == {"s", "t"} and len(st.rows(sweep="t")) == 1
        assert st.computed("4a")[0]["value"] == 1e-3
        assert [ev["detail"] for ev in st.events() if ev["kind"] == "healed"] == ["on B"]
        assert st.meta()["merged_from"] == [str(tmp_path / f"{n}.db") for n in "ABC"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_merged_store_resumes_only_what_no_machine_finished(tmp_path):
    """Two machines run halves of one sweep into their own stores; the merged store lists every run, and a
    sweep over it trains only the run neither finished."""
    spec = SweepSpec(name="split", base=TINY, grid={"model.heads": [1, 2, 4]})
    runs = spec.expand()
    for i, part in enumerate((runs[:1], runs[1:2])):
        with Store(tmp_path / f"m{i}.db") as st:
            run_sweep(part, st, "split", runs_dir=tmp_path / f"runs{i}", progress=False, fleet="off")
    out = tmp_path / "all.db"
    assert main(["store", "merge", str(tmp_path / "m0.db"), str(tmp_path / "m1.db"), "--out", str(out)]) == 0
    with Store(out) as st:
        summary = run_sweep(runs, st, "split", runs_dir=tmp_path / "runs", progress=False, fleet="off")
        assert summary["skipped"] == 2 and summary["done"] == 1
        assert st.counts()["done"] == 3


@pytest.mark.parametrize(
    "case, says",
    [
        ("newer", "written by a newer sparsemem (schema 99"),
        ("foreign", "not a sparsemem store"),
        ("junk", "is not a SQLite database"),
        ("exists", "exists; merge writes a new store"),
        ("missing", "does not exist"),
    ],
)
def test_merge_refuses_bad_stores_one_line_exit_2_nothing_written(tmp_path, case, says):
    good = tmp_path / "good.db"
    _fake(good, "s", [(_cfg(1), "done", 0.1, 1.0)])
    bad = tmp_path / "bad.db"
    out = tmp_path / "all.db"
    if case == "newer":
        _fake(bad, "s", [(_cfg(2), "done", 0.1, 1.0)])
        con = sqlite3.connect(bad)
        con.execute("PRAGMA user_version = 99")
        con.close()
    elif case == "foreign":
        con = sqlite3.connect(bad)
        con.execute("CREATE TABLE other (x)")
        con.close()
    elif case == "junk":
        bad.write_text("junk")
    elif case == "exists":
        _fake(bad, "s", [(_cfg(2), "done", 0.1, 1.0)])
        out.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "sparsemem", "store", "merge", str(good), str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (out.exists() and out.read_text() == "") if case == "exists" else not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".all.db")]
