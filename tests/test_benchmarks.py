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


def test_attention_speed_prints_every_kernel_and_rpe(tmp_path):
    """benchmarks/attention_speed.py on the CPU: the two no-RPE floors, then one row a kernel and RPE with
    its milliseconds and its ratio to the no-bias floor."""
    env = {"PATH": "/usr/bin:/bin", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "attention_speed.py"), "--repeats", "1"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    report = json.loads(out.stdout)
    assert report["kernels"] == ["chunked", "sdpa"] and report["dtype"] == "float32"
    rows = report["rows"]
    assert [r["attention"] for r in rows[:2]] == ["sdpa, causal, no bias", "sdpa, lin bias frozen"]
    assert {(r["kernel"], r["rpe"]) for r in rows[2:]} == {
        (k, r) for k in ("chunked", "sdpa") for r in ("lin", "log", "alibi")
    }
    for r in rows:
        assert r["ms"] > 0 and r["vs_no_bias"] == pytest.approx(r["ms"] / rows[0]["ms"], abs=0.01)
