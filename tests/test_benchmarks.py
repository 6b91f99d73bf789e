"""The benchmark scripts run and print what their docs say (their numbers are measured, not tested)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_lm_speed_prints_tokens_flops_and_ratios(tmp_path):
    """benchmarks/lm_speed.py on the CPU at its tiny shape: one row a model with tokens/s and model TFLOP/s
    (6 N + 12 L A T per token), MFU against a given peak, and each sparsemem model's ratio to x-transformers."""
    pytest.importorskip("x_transformers")
    env = {"SPARSEMEM_PEAK_TFLOPS": "2", "PATH": "/usr/bin:/bin", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lm_speed.py"), "--seconds", "0.1", "--batch", "2"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    report = json.loads(out.stdout)
    models = {m["model"]: m for m in report["models"]}
    assert report["kernels"] == ["chunked"]  # a CPU's default
    assert set(models) == {
        "sparsemem lin (trainable), chunked",
        "sparsemem log (trainable), chunked",
        "sparsemem alibi, chunked",
        "x-transformers alibi + flash",
    }
    shape = report["shape"]
    ref = models["x-transformers alibi + flash"]["tokens_per_s"]
    for m in models.values():
        fpt = 6 * m["params"] + 12 * shape["layers"] * shape["dim"] * shape["seq_len"]
        assert m["tokens_per_s"] > 0 and m["model_tflops"] == pytest.approx(fpt * m["tokens_per_s"] / 1e12, rel=1e-3)
        assert m["mfu"] == pytest.approx(m["model_tflops"] / 2, rel=1e-3)
        if m["model"].startswith("sparsemem"):
            assert m["vs_x_transformers"] == pytest.approx(m["tokens_per_s"] / ref, abs=1e-3)
