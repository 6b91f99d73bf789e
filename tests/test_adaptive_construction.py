"""The Task II construction with learned RPE and the FFN that snaps a memory onto the token grid."""

import pytest
import torch

import sparsemem as sm
from sparsemem.config import ConfigError
from sparsemem.experiments.synthetic import NESTED_TASK as NESTED
from sparsemem.theory.adaptive import construct_adaptive
from sparsemem.theory.construct import score


def nested_cfg(rpe: str, seed: int = 0, **task) -> sm.RunConfig:
    return sm.RunConfig.from_dict(
        {"task": {**NESTED, "seed": seed, **task}, "model": {"rpe": rpe}, "train": {"val_samples": 1000}}
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_learned_rpe_makes_the_nested_task_exact(seed):
    """One exact head per lag (bias 0 there, -60 elsewhere): lags up to 16 at T = 32, two layers, exact
    to round-off, where 8 lin heads per lag cannot isolate those lags (delta-fit l1 > 1)."""
    model, info = construct_adaptive(nested_cfg("learned", seed), 1, width=64, samples=2000)
    assert info["layers"] == 2 and info["snapped"] and info["rpe"] == "learned"
    assert max(info["kernel_l1"].values()) < 1e-20
    assert info["val_rel"] < 1e-12 and info["sup_error"] < 1e-6
    assert model.cfg.rpe == "learned" and not model.cfg.normalize


def test_lin_delta_fits_at_long_lags_stay_far_off():
    _, info = construct_adaptive(nested_cfg("lin", lags=[12, 12]), 4, width=64, samples=2000)
    far = [v for lag, v in info["kernel_l1"].items() if int(lag) >= 8]
    assert far and min(far) > 1.0  # the delta at lag >= 8 is not isolated
    assert info["val_rel"] > 0.05


def test_snap_absorbs_an_imprecise_memory_and_its_absence_does_not():
    """Memory 1 scaled by 1.3 (off its token grid by 0.3 < 7/16): the FFN after layer 1 puts it back, so
    layer 2's gates stay exact; with that FFN zeroed the off-grid gates ruin memory 2."""
    cfg = nested_cfg("learned", 3)
    task = sm.make_task(cfg.task)
    model, info = construct_adaptive(cfg, 1, width=64, samples=2000)
    with torch.no_grad():
        model.attn[0].o.weight[2] *= 1.3  # coordinate 2 holds memory 1
    snapped = score(model, task, cfg)
    with torch.no_grad():
        for p in model.ffn[0].parameters():
            p.zero_()
    blind = score(model, task, cfg)
    assert snapped["val_rel"] < 1e-10
    assert blind["val_rel"] > 1e-3


def test_no_snap_where_the_ffn_is_too_narrow():
    _, info = construct_adaptive(nested_cfg("learned", seq_len=16, lags=[4, 4]), 1, width=4, samples=2000)
    assert info["layers"] == 2 and not info["snapped"]


@pytest.mark.parametrize(
    "rpe, attention, words",
    [("log", "dp", "lin or learned"), ("learned", "tmx", "model.rpe=lin")],
)
def test_refuses_other_rpes(rpe, attention, words):
    with pytest.raises(ConfigError, match=words):
        construct_adaptive(nested_cfg(rpe), 1, attention=attention)
