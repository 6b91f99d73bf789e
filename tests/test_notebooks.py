"""The notebooks under examples/notebooks run top to bottom, with the values of their parameters cell made
small (as papermill would), in a scratch folder."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "examples" / "notebooks"
SMALL = {
    "quickstart.ipynb": "STEPS = 150\nHEADS = 1\nRPE = 'log'",
    "reproduce_4a.ipynb": (
        "EXPERIMENT = '4a'\nOUT = 'results-4a'\nWORKERS = 1\nOVERRIDES = ['train.steps=20', "
        "'train.val_samples=100', 'train.batch_size=20', 'task.seq_len=24']"
    ),
}


def run_notebook(name: str, folder: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = SMALL[name]
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return nb


def outputs(nb) -> tuple[str, int]:
    """All text the notebook printed or showed, and how many images it drew."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise AssertionError(out.get("ename"))
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


def test_every_notebook_has_a_parameters_cell_and_a_small_setting():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(SMALL)
    for name in names:
        cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
        assert sum("parameters" in c["metadata"].get("tags", []) for c in cells) == 1, name
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), f"{name} is saved with outputs"


def test_quickstart_trains_plots_and_compares_with_the_optimal_fit(tmp_path):
    nb = run_notebook("quickstart.ipynb", tmp_path)
    text, images = outputs(nb)
    assert images == 1
    assert "150 steps: validation MSE" in text
    assert "log RPE floor: H=1" in text and "lin RPE floor: H=1" in text
    assert (tmp_path / "runs" / "quickstart" / "final.json").exists()


def test_reproduction_walkthrough_runs_4a_loads_pandas_and_draws(tmp_path):
    pytest.importorskip("pandas")
    nb = run_notebook("reproduce_4a.ipynb", tmp_path)
    text, images = outputs(nb)
    assert images == 1
    assert "4a: " in text and "report: results-4a/REPORT.md" in text
    store = tmp_path / "results-4a" / "results.db"
    import sparsemem as sm

    df = sm.load_results(store)
    assert f"{len(df)} runs; {{'done': {len(df)}}}" in text
    assert (df["steps"] == 20).all() and (df["task.seq_len"] == 24).all()
    assert "Overrides on every run" in (tmp_path / "results-4a" / "REPORT.md").read_text()
