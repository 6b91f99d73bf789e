"""Head-count scaling (Thm 3.1) and rates (Thm 5.1): the H = T construction checked against an independent
high-precision evaluation of real heads, the exact T - 1 check, growth fits, the CLI and the computed experiment."""

import importlib
import json
import math
import subprocess
import sys

import mpmath
import pytest

from sparsemem.theory.scaling import (
    THM51_KERNELS,
    exact_fewer,
    exact_l2,
    growth,
    interpolation,
    interpolation_l1,
    rates,
    scaling_table,
)


def heads_by_hand(T, rpe, a, S, dps=400):
    """The construction as T normalized heads w_h(s) = z_s^h / N_h plus a residual, expanded and evaluated in
    mpmath: returns (l1 error against delta_T, log10 sum_h |c_h|)."""
    with mpmath.workdps(dps):

        def z(s):
            if rpe == "lin":
                return mpmath.exp(-a * s)
            return mpmath.mpf(s) ** (-a) if s else mpmath.mpf(0)

        zs = [z(s) for s in range(S)]
        coeffs = [mpmath.mpf(0), mpmath.mpf(1)]  # P(z) = z, monomial coefficients by degree
        for j in range(1, T):  # times (z - z_j)
            nxt = [mpmath.mpf(0)] * (len(coeffs) + 1)
            for k, v in enumerate(coeffs):
                nxt[k + 1] += v
                nxt[k] -= v * zs[j]
            coeffs = nxt
        p_at_t = mpmath.polyval(coeffs[::-1], zs[T])
        seen = range(S) if rpe == "lin" else range(1, S)  # a log head never looks at s = 0
        c = {h: coeffs[h] * mpmath.fsum(zs[s] ** h for s in seen) / p_at_t for h in range(1, T + 1)}

        def kernel(s):  # sum_h c_h w_h(s)
            if s not in seen:
                return mpmath.mpf(0)
            return mpmath.fsum(c[h] * zs[s] ** h / mpmath.fsum(zs[u] ** h for u in seen) for h in c)

        k = [kernel(s) for s in range(S)]
        k[0] = mpmath.mpf(0)  # the residual's lag-0 weight cancels whatever the heads put there
        l1 = mpmath.fsum(abs(k[s] - (1 if s == T else 0)) for s in range(S))
        return float(l1), float(mpmath.log10(mpmath.fsum(abs(v) for v in c.values())))


@pytest.mark.parametrize("rpe", ["lin", "log"])
@pytest.mark.parametrize("T", [3, 6])
def test_construction_matches_real_heads_in_high_precision(rpe, T):
    r = interpolation(T, rpe, 0.05)
    l1, weight = heads_by_hand(T, rpe, r["a"], r["seq_len"])
    assert r["heads"] == T
    assert l1 == pytest.approx(r["l1"], rel=1e-6)
    assert r["l1"] <= 0.05
    assert weight == pytest.approx(r["log10_weight"], abs=1e-6)


@pytest.mark.parametrize("rpe", ["lin", "log"])
def test_smallest_scale_is_found(rpe):
    r = interpolation(20, rpe, 0.01)
    assert r["l1"] <= 0.01 < interpolation_l1(20, rpe, 0.97 * r["a"], r["seq_len"])
    # a larger scale still works (the tail only shrinks) but costs weight digits
    assert interpolation_l1(20, rpe, 1.5 * r["a"], r["seq_len"]) < r["l1"]


@pytest.mark.parametrize("rpe", ["lin", "log"])
def test_one_head_fewer_cannot_isolate_the_lag(rpe):
    check = exact_fewer(4, rpe, 0.1)
    assert check["heads"] == 3 and not check["reaches"] and check["l1_at_least"] > 0.5
    # while T heads on the same grid fit it: least squares is at least as good as the construction in l2
    r = interpolation(4, rpe, 0.1)
    assert math.sqrt(exact_l2(4, rpe, 4, r["a"])) <= r["l1"] + 1e-12


def test_growth_tells_power_from_exponential():
    xs = [8, 16, 32, 64, 128]
    power = growth(xs, [3 * x**2 for x in xs])
    assert power["better"] == "power" and power["power"]["slope"] == pytest.approx(2)
    expo = growth(xs, [math.exp(0.05 * x) for x in xs])
    assert expo["better"] == "exponential" and expo["exponential"]["slope"] == pytest.approx(0.05)
    assert growth([8, 16], [1, 2]) is None


def test_heads_grow_linearly_and_weights_faster_for_log():
    table = scaling_table([8, 16, 32, 64], ["lin", "log"], [0.1])
    for rpe in ("lin", "log"):
        assert [r["heads"] for r in table["rows"][rpe][0.1]] == [8, 16, 32, 64]
        assert table["fits"][f"{rpe} eps=0.1"]["heads"]["power"]["slope"] == pytest.approx(1)
    lin_w = [r["log10_weight"] for r in table["rows"]["lin"][0.1]]
    log_w = [r["log10_weight"] for r in table["rows"]["log"][0.1]]
    assert all(b > a for a, b in zip(lin_w, lin_w[1:])) and all(g > w for g, w in zip(log_w, lin_w))


def test_rates_fall_for_kernels_a_head_type_cannot_represent():
    out = rates(["(1+s)^-1.5", "s^-1.5"], ["lin", "log"], 4, 200)
    shifted = out["(1+s)^-1.5"]["lin"]
    assert all(b <= a for a, b in zip(shifted["l2"], shifted["l2"][1:])) and shifted["l2"][-1] < 1e-3 * shifted["l2"][0]
    assert shifted["fit"]["power"]["slope"] < -2
    assert out["s^-1.5"]["log"]["fit"] is None and out["s^-1.5"]["log"]["l2"][0] < 1e-20
    with pytest.raises(ValueError, match="one of"):
        rates(["nope"], ["lin"], 2, 50)
    assert set(THM51_KERNELS) >= {"s^-1.5", "e^-0.5s"}


def test_cli_scaling_json_and_bad_input(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsemem",
            "theory",
            "scaling",
            "--lags",
            "4,8,16",
            "--eps",
            "0.1",
            "--check",
            "4",
            "--rate-heads",
            "2",
            "--json",
            "--plot",
            str(tmp_path / "s.png"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["heads"] for r in data["rows"]["lin"]["0.1"]] == [4, 8, 16]
    assert data["checks"][0]["T"] == 4 and not data["checks"][0]["reaches"]
    assert (tmp_path / "s.png").stat().st_size > 1000
    for args, word in (
        (["--eps", "1.5"], "--eps"),
        (["--rpe", "t5"], "--rpe"),
        (["--lags", "1,4"], "--lags"),
        (["--check", "30"], "--check"),
    ):
        bad = subprocess.run(
            [sys.executable, "-m", "sparsemem", "theory", "scaling", *args], capture_output=True, text=True
        )
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and word in bad.stderr


def test_reproduce_computes_once_and_report_rebuilds(tmp_path, monkeypatch):
    rp = importlib.import_module("sparsemem.reproduce")  # the module: sm.reproduce is the function
    from sparsemem.experiments import scaling as exp
    from sparsemem.report import build_report
    from sparsemem.sweep.store import Store

    monkeypatch.setitem(exp.LAGS, "quick", [4, 8, 16])
    monkeypatch.setitem(exp.CHECK_LAGS, "quick", [4])
    monkeypatch.setattr(exp, "RATE_HEADS", 2)
    out = tmp_path / "r"
    verdicts = rp.reproduce(["head_scaling"], out=out, progress=False)["verdicts"]
    assert verdicts["head_scaling"].holds is False  # H = T for both RPE types
    with Store(out / "results.db") as store:
        data = store.meta()["computed:head_scaling"]
    assert [r["heads"] for r in data["rows"]["log"]["0.01"]] == [4, 8, 16]
    report = (out / "REPORT.md").read_text()
    assert "## head_scaling" in report and "none (computed)" in report
    assert (out / "figures" / "head_scaling.png").exists()

    calls = []
    monkeypatch.setattr(exp.EXP_SCALING, "compute", lambda profile: calls.append(profile) or {})
    rp.reproduce(["head_scaling"], out=out, progress=False)
    assert calls == []  # kept in the store, not computed again
    (out / "REPORT.md").unlink()
    build_report(out / "results.db", out)
    assert "## head_scaling" in (out / "REPORT.md").read_text()
