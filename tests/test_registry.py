"""The registry is the one place names live: the schemas, the models, the theory and `sparsemem list`
all read it, and each RPE type's phi is the bias its heads add."""

import math
import subprocess
import sys

import pytest
import torch

from sparsemem import registry
from sparsemem.config import ConfigError, RunConfig
from sparsemem.models.rpe import RPE
from sparsemem.theory.fit import FIT_RPES, head_kernels


def test_schemas_allow_exactly_the_registered_names():
    for rpe in registry.RPES:
        assert RunConfig.from_dict({}, [f"model.rpe={rpe}"]).model.rpe == rpe
    for kind in registry.ATTENTION:
        ok = kind != "tmx" or registry.RPES["lin"].tmx
        assert ok and RunConfig.from_dict({}, [f"model.attention={kind}"]).model.attention == kind
    with pytest.raises(ConfigError, match="model.rpe"):
        RunConfig.from_dict({}, ["model.rpe=rope"])


@pytest.mark.parametrize("name", [n for n, r in registry.RPES.items() if r.phi is not None])
def test_each_heads_bias_is_p_times_the_registered_phi(name):
    """RPE.forward is p_h phi(s) with phi from the registry (phi itself where the type has no scale)."""
    rpe = RPE(name, 3, init=0.7 if name != "alibi" else None, buckets=4, max_distance=12).double()
    s = torch.arange(20, dtype=torch.float64)
    shape = {"buckets": 4, "max_distance": 12}
    if name == "kerple_log":
        shape["a"] = rpe.log_a.exp().double()[:, None]
    phi = registry.phi(name, s, **shape).expand(3, 20)
    p = rpe.p.double()[:, None] if rpe.p is not None else torch.ones(3, 1, dtype=torch.float64)
    want = torch.where(torch.isfinite(phi), p * torch.where(torch.isfinite(phi), phi, 0), -math.inf)
    assert torch.equal(rpe(20, dtype=torch.float64), want)


def test_capabilities_follow_the_entries():
    assert registry.rpes(family="log") == ("log", "t5", "kerple_log")
    assert registry.rpes(family="lin") == ("lin", "alibi")
    assert set(FIT_RPES) == {n for n, r in registry.RPES.items() if "fit" in r.theory}
    for name, entry in registry.RPES.items():
        if not entry.tmx:
            with pytest.raises(ConfigError, match="tmx attention needs rpe"):
                RunConfig.from_dict({}, ["model.attention=tmx", f"model.rpe={name}"])
        if not entry.signed:
            with pytest.raises(ConfigError, match="rpe_sign"):
                RunConfig.from_dict({}, [f"model.rpe={name}", "model.rpe_sign=free"])
    assert registry.RPES["log"].inf_at_zero and not registry.RPES["lin"].inf_at_zero
    # the fixed ALiBi slopes are the heads' p and the fit's p
    assert torch.allclose(RPE("alibi", 4).p.double(), registry.alibi_slopes(4), rtol=1e-6)
    k = head_kernels("alibi", registry.alibi_slopes(2), 8)
    assert torch.allclose(k.sum(-1), torch.ones(2, dtype=torch.float64))


def test_list_prints_every_registered_name():
    out = subprocess.run([sys.executable, "-m", "sparsemem", "list"], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["rpe"].split(", ") == list(registry.RPES)
    assert lines["attention"].split(", ") == list(registry.ATTENTION)
    assert lines["task"].split(", ") == list(registry.TASKS)


@pytest.mark.parametrize("name,dead", [("log", True), ("lin", False), ("learned", False)])
def test_lag_zero_admissibility_is_read_at_construction_even_on_the_meta_device(name, dead):
    """Models are built on the meta device to count parameters; an RPE reads whether lag 0 is
    inadmissible when it is made (not in a compiled forward), so that read must work there too."""
    import dataclasses

    fresh = dataclasses.replace(registry.RPES[name])  # nothing cached yet
    with torch.device("meta"):
        assert fresh.inf_at_zero is dead
        assert RPE(name, 2).inf_at_zero is dead


def _published_alibi(n: int) -> list[float]:
    """ALiBi's recipe, written out independently: a power of two n takes start = 2^(-8/n) and the slopes
    start^1 .. start^n; any other n takes the slopes of the largest power of two below it, then every
    other slope of twice that many heads, as many as are missing."""
    if math.log2(n).is_integer():
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]
    low = 2 ** math.floor(math.log2(n))
    return _published_alibi(low) + _published_alibi(2 * low)[0::2][: n - low]


@pytest.mark.parametrize("heads", range(1, 65))
def test_alibi_slopes_follow_the_published_recipe(heads):
    got = registry.alibi_slopes(heads)
    assert got.dtype == torch.float64 and got.shape == (heads,)
    assert torch.allclose(got, torch.tensor(_published_alibi(heads), dtype=torch.float64), rtol=1e-12, atol=0)


def test_alibi_slopes_for_three_and_six_heads():
    """H = 3: the two slopes of H = 2 (2^-4, 2^-8), then the first odd slope of H = 4 (2^-2); H = 6: the
    four of H = 4, then 2^-1 and 2^-3 of H = 8. Sorted side by side, the plain 2^(-8h/H) is off from these
    by up to 159% of its own value over H = 1..64 (152% at H = 3)."""
    assert registry.alibi_slopes(3).tolist() == [2.0**-4, 2.0**-8, 2.0**-2]
    assert registry.alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    assert registry.alibi_slopes(8).tolist() == [2.0**-k for k in range(1, 9)]
