"""Recurrent baselines: the linear recurrence's fast paths, its kernel, causality, learning."""

import pytest
import torch

import sparsemem as sm
from sparsemem import ModelConfig, make_model


def rnn(arch="linear_rnn", output="last", impl="fast", **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, hidden=5, ffn_width=kw.pop("ffn_width", 6), impl=impl, **kw)
    return make_model(cfg, input_dim=2, output=output).double()


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("ffn_width", [0, 6])
def test_linear_rnn_fast_matches_recurrence(output, ffn_width, gen):
    fast, ref = rnn(output=output, ffn_width=ffn_width), rnn(output=output, impl="reference", ffn_width=ffn_width)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 40, 2, generator=gen, dtype=torch.float64)
    assert torch.allclose(fast(x), ref(x), atol=1e-10)


def test_linear_rnn_kernel_is_a_sum_of_exponentials():
    model = rnn(ffn_width=0)
    T = 30
    x = torch.zeros(1, T, 2, dtype=torch.float64)
    # y at the last position for an impulse at lag s, minus the response to zeros: K(s)
    base = model(x)
    lam, B = model.lam.double(), model.B.weight[:, 0]
    C, D = model.readout.weight[0, :5], model.readout.weight[0, 5]
    for s in (0, 1, 7, 29):
        xi = x.clone()
        xi[0, T - 1 - s, 0] = 1.0
        want = (C * B * lam**s).sum() + (D if s == 0 else 0.0)
        assert (model(xi) - base).item() == pytest.approx(want.item(), abs=1e-12)


@pytest.mark.parametrize("arch", ["linear_rnn", "lstm"])
def test_recurrent_baselines_are_causal(arch, gen):
    model = rnn(arch, output="all")
    x = torch.randn(2, 16, 2, generator=gen, dtype=torch.float64)
    y = model(x)
    x2 = x.clone()
    x2[:, 9] += 1.0
    y2 = model(x2)
    assert (y2[:, :9] - y[:, :9]).abs().max() < 1e-12 and not torch.allclose(y2[:, 9:], y[:, 9:])


def test_one_state_linear_rnn_learns_an_exponential_kernel():
    cfg = sm.RunConfig.from_dict(
        {},
        [
            "task.kind=kernel",
            "task.kernels=[exp:0.5]",
            "task.seq_len=64",
            "model.arch=linear_rnn",
            "model.hidden=1",
            "model.ffn_width=0",
            "train.steps=500",
            "train.lr=0.02",
            "train.rpe_lr_scale=1",
            "train.schedule=constant",
            "train.batch_size=64",
            "train.val_samples=500",
        ],
    )
    result = sm.train(cfg, progress=False)
    assert result["val_rel"] < 1e-4
    assert result["model"].lam.item() == pytest.approx(torch.exp(torch.tensor(-0.5)).item(), rel=0.02)


def test_lstm_trains(tmp_path):
    cfg = sm.RunConfig.from_dict(
        {},
        [
            "task.lags=[1,2]",
            "task.seq_len=12",
            "model.arch=lstm",
            "model.hidden=16",
            "model.ffn_width=16",
            "train.steps=200",
            "train.lr=0.01",
            "train.batch_size=32",
            "train.val_samples=200",
        ],
    )
    result = sm.train(cfg, out_dir=tmp_path, progress=False)
    assert result["status"] == "done" and result["val_rel"] < 0.2
