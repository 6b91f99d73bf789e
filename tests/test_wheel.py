"""The wheel: built from the repository, installed apart from it, it runs from any folder with what ships in
it (the experiment catalogue, the example configs and sweep specs)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sparsemem as sm

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, built without network (--no-isolation) and unpacked into a folder of its own (its
    dependencies are this interpreter's). Returns (wheel, folder, env) where env puts only that folder
    ahead of site-packages."""
    pytest.importorskip("build")
    tmp = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("sparsemem-*.whl")
    target = tmp / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    return wheel, target, env


def run(installed, *args, cwd):
    _, _, env = installed
    return subprocess.run([sys.executable, "-m", "sparsemem", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_the_wheel_holds_the_catalogue_and_the_examples(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sparsemem/experiments/catalogue.yaml" in names
    shipped = {Path(n).stem for n in names if n.startswith("sparsemem/examples/") and n.endswith(".yaml")}
    assert shipped == {p.stem for p in (ROOT / "sparsemem" / "examples").glob("*.yaml")} and "kernel_exp" in shipped
    assert f"sparsemem-{sm.__version__}-" in wheel.name


def test_the_installed_wheel_runs_outside_the_repository(installed, tmp_path):
    _, target, env = installed
    where = subprocess.run(
        [sys.executable, "-c", "import sparsemem; print(sparsemem.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(target)  # the installed copy, not the checkout
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"sparsemem {sm.__version__}"
    listed = run(installed, "list", cwd=tmp_path)
    assert listed.returncode == 0 and "example: " in listed.stdout and "kernel_exp" in listed.stdout
    trained = run(
        installed, "train", "kernel_exp", "train.steps=30", "--out", "run", "--json", "--no-progress", cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "final.json").exists()
    swept = run(
        installed,
        "sweep",
        "sweep_kernel_heads",
        "train.steps=3",
        "task.seq_len=32",
        "--store",
        "s.db",
        "--no-progress",
        cwd=tmp_path,
    )
    assert swept.returncode == 0, swept.stderr
    assert "8 runs" in swept.stdout
