"""Every RPE x attention kind x normalization x output mode: shape, causality,
fast paths against the explicit reference, and the FFT path's accuracy."""

import math

import pytest
import torch
from conftest import MODEL_COMBOS, close
from pydantic import ValidationError

from sparsemem import ModelConfig, RunConfig, make_model
from sparsemem.models.attention import Attention
from sparsemem.models.block import round_with_precision
from sparsemem.models.rpe import RPE
from sparsemem.registry import t5_bucket


def build(rpe, att, norm, output, impl="fast", dtype=torch.float64, seed=0, **kw):
    opts = dict(
        layers=2,
        heads=2,
        dim=8,
        ffn_width=6,
        rpe=rpe,
        attention=att,
        normalize=norm,
        rpe_buckets=3,
        rpe_max_distance=7,
        impl=impl,
    )
    opts.update(kw)
    torch.manual_seed(seed)
    return make_model(ModelConfig(**opts), input_dim=2, output=output).to(dtype)


def pair(rpe, att, norm, output, dtype=torch.float64, **kw):
    fast = build(rpe, att, norm, output, "fast", dtype, **kw)
    ref = build(rpe, att, norm, output, "reference", dtype, **kw)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("rpe,att,norm", MODEL_COMBOS)
def test_shape_and_finite(rpe, att, norm, output, gen):
    model = build(rpe, att, norm, output)
    x = torch.rand(3, 12, 2, generator=gen, dtype=torch.float64) - 0.5
    y = model(x)
    assert y.shape == ((3,) if output == "last" else (3, 12))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("rpe,att,norm", MODEL_COMBOS)
def test_causal(rpe, att, norm, impl, gen):
    """Changing x_s leaves every output before s unchanged (to float64 round-off:
    the FFT path mixes all positions at the 1e-16 level)."""
    model = build(rpe, att, norm, "all", impl)
    x = torch.rand(2, 12, 2, generator=gen, dtype=torch.float64) - 0.5
    y = model(x)
    for s in (0, 5, 11):
        x2 = x.clone()
        x2[:, s] += 0.7
        y2 = model(x2)
        assert s == 0 or (y2[:, :s] - y[:, :s]).abs().max().item() <= 1e-12, f"output before {s} changed"
        if s < 11:  # and the change does reach later positions
            assert not torch.allclose(y2[:, s:], y[:, s:])


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("rpe,att,norm", MODEL_COMBOS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-8), (torch.float32, 1e-5)])
def test_fast_matches_reference(rpe, att, norm, output, layers, dtype, tol, gen):
    fast, ref = pair(rpe, att, norm, output, dtype, layers=layers)
    x = (torch.rand(3, 12, 2, generator=gen, dtype=torch.float64) - 0.5).to(dtype)
    a, b = fast(x), ref(x)
    assert close(a, b, tol), (a - b).abs().max().item()


@pytest.mark.parametrize("layers,output", [(2, "all"), (1, "last")])
@pytest.mark.parametrize("rpe,att,norm", [c for c in MODEL_COMBOS if c[0] in ("lin", "log", "learned")])
def test_fast_gradients_match_reference(rpe, att, norm, layers, output, gen):
    fast, ref = pair(rpe, att, norm, output, layers=layers)
    x = torch.rand(2, 10, 2, generator=gen, dtype=torch.float64) - 0.5
    fast(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        # tmx's query weights cancel under softmax: the fast path leaves their grad unset
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        assert q.grad is not None and torch.isfinite(g).all(), name
        assert close(g, q.grad, 1e-7), name


def test_last_equals_last_row_of_all(gen):
    for rpe, att, norm in MODEL_COMBOS:
        last = build(rpe, att, norm, "last")
        full = build(rpe, att, norm, "all")
        full.load_state_dict(last.state_dict())
        x = torch.rand(2, 9, 2, generator=gen, dtype=torch.float64) - 0.5
        assert close(last(x), full(x)[:, -1], 1e-10), (rpe, att, norm)


@pytest.mark.parametrize("kind", ["lin", "log"])
@pytest.mark.parametrize("p", [0.1, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("normalize", [True, False])
def test_fft_conv_float32_accuracy_long(kind, p, normalize):
    """dp_free heads over T = 4096: float32 FFT path within 1e-5 of a float64 reference."""
    T = 4096
    cfg = ModelConfig(heads=1, dim=2, rpe=kind, rpe_init=p, attention="dp_free", normalize=normalize)
    attn32 = Attention(cfg)
    attn64 = Attention(cfg.model_copy(update={"impl": "reference"})).double()
    with torch.no_grad():  # unit-scale values: W_V = W_O = I
        attn32.v.weight.copy_(torch.eye(2))
        attn32.o.weight.copy_(torch.eye(2))
    attn64.load_state_dict(attn32.state_dict())
    x = torch.randn(4, T, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = attn32(x)
        # float64 reference without the (B, H, T, T) matrix: direct sums per row
        bias = attn64.rpe(T, None, torch.float64)[0]
        v = attn64.v(x.double())  # (B, T, hd)
        e = torch.exp(bias - (bias[1] if kind == "log" else bias[0]) * normalize)
        rows = torch.arange(T)
        lag = rows[:, None] - rows[None, :]
        w = torch.where(lag >= 0, e[lag.clamp(min=0)], torch.zeros(()))
        if normalize:
            z = w.sum(-1, keepdim=True)
            w = w / torch.where(z > 0, z, torch.ones_like(z))
        want = attn64.o(torch.einsum("ts,bsd->btd", w, v))
    err = (got.double() - want).abs().max().item()
    assert err <= 1e-5, err


def test_rpe_shapes_and_values():
    s = torch.arange(6, dtype=torch.float64)
    lin = RPE("lin", 2, init=0.5)
    assert torch.allclose(lin(6, None, torch.float64), -0.5 * s.expand(2, -1))
    log = RPE("log", 1, init=2.0)(6, None, torch.float64)[0]
    assert log[0] == -math.inf and torch.allclose(log[1:], -2.0 * torch.log(s[1:]))
    alibi = RPE("alibi", 4)
    assert torch.allclose(
        alibi.p.double(), torch.tensor([2.0 ** (-2 * h) for h in range(1, 5)], dtype=torch.float64), rtol=1e-6
    )
    assert not any(p.requires_grad for p in alibi.parameters())
    assert torch.equal(RPE("none", 3)(5, None), torch.zeros(3, 5))
    learned = RPE("learned", 2, max_distance=4)
    with torch.no_grad():
        learned.table.copy_(torch.arange(8.0).view(2, 4))
    assert torch.equal(learned(6, None)[0], torch.tensor([0.0, 1, 2, 3, 3, 3]))
    kerple = RPE("kerple_log", 1, init=1.0)
    assert torch.allclose(kerple(4, None, torch.float64)[0], -torch.log1p(torch.arange(4.0, dtype=torch.float64)))


def test_t5_bucket_formula():
    B, D = 4, 32
    n = torch.arange(60)
    r = t5_bucket(n, B, D)
    for k in range(60):
        if k < B:
            want = k
        elif k < D:
            want = B + math.floor(B * math.log(k / B) / math.log(D / B))
        else:
            want = 2 * B - 1
        assert r[k].item() == want, k
    assert (r.diff() >= 0).all()


def test_t5_bucket_is_exact_at_every_boundary():
    """r(n) against the formula in 60-digit arithmetic for every B <= 16, D <= 200 and n; a tie (n^B =
    D^k B^(B-k)) belongs to the upper bucket, where a float64 log can put n one bucket low."""
    import mpmath

    mpmath.mp.dps = 60
    for B in range(1, 17):
        for D in range(B + 1, 201, 7 if B > 4 else 1):
            n = torch.arange(D + 5)
            r = t5_bucket(n, B, D).long().tolist()
            for k in range(D + 5):
                if k < B:
                    want = k
                elif k >= D:
                    want = 2 * B - 1
                else:
                    x = B * mpmath.log(mpmath.mpf(k) / B) / mpmath.log(mpmath.mpf(D) / B)
                    want = min(B + int(mpmath.floor(x + mpmath.mpf(10) ** -40)), 2 * B - 1)
                assert r[k] == want, (B, D, k)
    assert t5_bucket(torch.tensor([95, 96, 97]), 12, 192).tolist() == [20.0, 21.0, 21.0]
    assert 12 + math.floor(12 * math.log(96 / 12) / math.log(192 / 12)) == 20  # the float64 formula's miss


@pytest.mark.parametrize("rpe", ["lin", "log", "t5", "kerple_log", "alibi", "learned"])
@pytest.mark.parametrize("att", ["dp", "dp_free", "tmx"])
@pytest.mark.parametrize("p", [1e-3, 1.0, 50.0, 1e4])
@pytest.mark.parametrize("output", ["last", "all"])
def test_normalization_free_float32_long_sequences_stay_finite(rpe, att, p, output):
    """Normalization-free heads in float32 at T = 1000, from tiny to huge p: outputs and gradients finite
    wherever the exact weights fit float32. TMX's weights exp(p (phi(s) - phi(w . x_t))) reach e^(p |w . x_t|),
    past float32 (and its squared loss) once p |w . x_t| nears 44: tested at p <= 1 (see rpe.py)."""
    if att == "tmx" and (rpe not in ("lin", "log", "alibi", "kerple_log") or p > 1):
        pytest.skip("tmx needs a real-argument phi; with large p its exact weights exceed float32")
    cfg = ModelConfig(
        layers=1,
        heads=4,
        dim=16,
        ffn_width=8,
        rpe=rpe,
        attention=att,
        normalize=False,
        rpe_init=p,
        rpe_max_distance=1000,
    )
    torch.manual_seed(0)
    model = make_model(cfg, input_dim=1, output=output)
    x = torch.randint(0, 2, (4, 1000, 1), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    y = model(x)
    y.square().mean().backward()
    assert torch.isfinite(y).all()
    for name, q in model.named_parameters():
        assert q.grad is None or torch.isfinite(q.grad).all(), name


def test_p_stays_positive_and_trainable():
    rpe = RPE("log", 3)
    assert (rpe.p > 0).all()
    rpe(8, None).sum().backward()
    assert rpe.log_p.grad is not None and torch.isfinite(rpe.log_p.grad).all()


def test_attention_kernels_are_dp_free_weights(gen):
    model = build("lin", "dp_free", True, "last", layers=1, ffn_width=0)
    ks = model.attention_kernels(10)
    assert len(ks) == 1 and ks[0].shape == (2, 10)
    assert abs(ks[0].sum(1) - 1).max() < 1e-12
    # a DP-free head is a convolution with that kernel: check at the last position
    attn = model.attn[0]
    x = torch.rand(1, 10, 8, generator=gen, dtype=torch.float64)
    v = attn.v(x).view(1, 10, 2, 4)
    k = torch.tensor(ks[0])
    want = attn.o(torch.einsum("hs,bshd->bhd", k, v.flip(1)).reshape(1, 8))
    assert torch.allclose(attn(x, last_only=True)[:, 0], want)


def test_ffn_precision_rounds_forward_and_passes_gradient():
    f = torch.tensor([0.4, 1.6, 2.5], requires_grad=True)
    out = round_with_precision(f, log_type=False)
    assert torch.equal(out.detach(), torch.tensor([0.0, 2.0, 2.0]))
    out.sum().backward()
    assert torch.equal(f.grad, torch.ones(3))
    g = torch.log(torch.tensor([2.2, 3.7]))
    assert torch.allclose(round_with_precision(g, log_type=True), torch.log(torch.tensor([2.0, 4.0])))


def test_switches_change_the_model(gen):
    x = torch.rand(2, 8, 2, generator=gen, dtype=torch.float64)
    base = build("lin", "dp", True, "all")
    for kw in ({"layer_norm": True}, {"scale": True}, {"ffn_precision": True}):
        other = build("lin", "dp", True, "all", **kw)
        other.load_state_dict(base.state_dict(), strict=False)
        assert not torch.allclose(base(x), other(x)), kw
    ffn_free = build("lin", "dp", True, "all", ffn_width=0)
    assert isinstance(ffn_free.readout, torch.nn.Linear) and ffn_free.ffn is None


def test_tmx_uses_order_d_attention_parameters():
    cfg = dict(layers=1, heads=4, dim=16, ffn_width=0, rpe="lin")
    tmx = make_model(ModelConfig(attention="tmx", **cfg))
    dp = make_model(ModelConfig(attention="dp", **cfg))
    free = make_model(ModelConfig(attention="dp_free", **cfg))
    assert tmx.num_params() - free.num_params() == 4 * 16  # one w_h in R^D per head
    assert dp.num_params() - free.num_params() == 2 * 16 * 16


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("att", ["dp", "dp_free", "tmx"])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("rpe", ["lin", "log"])
def test_sign_free_p_turned_negative_fast_matches_reference(rpe, att, norm, output, gen):
    """model.rpe_sign = free: p_h is the parameter itself; with heads of both signs (kernels that grow with
    the lag) every fast path still equals the reference, values and gradients, and p gets its gradient."""
    fast, ref = pair(rpe, att, norm, output, layers=2, heads=2, rpe_sign="free")
    for model in (fast, ref):
        for attn in model.attn:
            assert not hasattr(attn.rpe, "log_p")
            with torch.no_grad():
                attn.rpe.signed_p.copy_(torch.tensor([-0.3, 0.7]))
        assert (model.attn[0].rpe.p < 0).any()
    x = torch.rand(2, 10, 2, generator=gen, dtype=torch.float64) - 0.5
    a, b = fast(x), ref(x)
    assert close(a, b, 1e-8), (a - b).abs().max().item()
    a.pow(2).sum().backward()
    b.pow(2).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        assert close(g, q.grad, 1e-7), name
    assert fast.attn[0].rpe.signed_p.grad.abs().sum() > 0


def test_sign_free_p_is_refused_where_p_is_not_trainable():
    for rpe in ("alibi", "none", "learned"):
        with pytest.raises(ValidationError, match="rpe_sign"):
            ModelConfig(rpe=rpe, rpe_sign="free")
    assert RunConfig.from_dict({}, ["model.rpe_sign=positive"]).config_hash() == RunConfig().config_hash()
    assert RunConfig.from_dict({}, ["model.rpe_sign=free"]).config_hash() != RunConfig().config_hash()


@pytest.mark.parametrize("rpe", ["lin", "log", "learned"])
@pytest.mark.parametrize("input_kind", ["rademacher", "ternary"])
def test_dp_first_layer_on_known_token_values(rpe, input_kind, monkeypatch):
    """One DP layer read at the last position, on a task whose tokens take known values: the model sums its
    weights per value (alphabet_softmax) and agrees with the reference path, output and gradients, in
    float64; where the check fails (a token off the value set, or a query pulling a logit past the limit,
    as in test_alphabet_softmax_drops_positions_the_limit_keeps_in) it takes TokenSoftmax, still exact."""
    from sparsemem import make_task
    from sparsemem.models import attention as attention_module

    calls = []
    real = attention_module.alphabet_softmax
    monkeypatch.setattr(attention_module, "alphabet_softmax", lambda *a: calls.append(1) or real(*a))
    inputs = {"rademacher": "rademacher", "ternary": {"kind": "discrete", "values": [-1.0, 0.0, 1.0]}}[input_kind]
    run = RunConfig.from_dict(
        {
            "task": {"kind": "fixed", "lags": [3, 9], "seq_len": 24, "input": inputs},
            "model": {"heads": 4, "dim": 8, "rpe": rpe, "attention": "dp", "ffn_width": 8, "rpe_max_distance": 24},
        }
    )
    task, cfg = make_task(run.task), run.model
    fast = make_model(cfg, task).double()
    ref = make_model(cfg.model_copy(update={"impl": "reference"}), task).double()
    ref.load_state_dict(fast.state_dict())
    x, _ = task.sample(6, torch.Generator().manual_seed(0), torch.float64)

    def agree(x):
        got, want = fast(x), ref(x)
        g_got = torch.autograd.grad(got.sum(), list(fast.parameters()))
        g_want = torch.autograd.grad(want.sum(), list(ref.parameters()))
        return close(got, want, 1e-10) and all(close(g, w, 1e-9) for g, w in zip(g_got, g_want))

    assert agree(x) and len(calls) == 1
    assert agree(torch.where(x == x[0, 0, 0], x, 0.5)) and len(calls) == 1  # tokens off the value set
    with torch.no_grad():
        fast.attn[0].q.weight.mul_(1e4)
        ref.attn[0].q.weight.mul_(1e4)
    assert agree(x) and len(calls) == 1  # |alpha| past ALPHABET_LIMIT
    alpha = torch.zeros(6, 4, 1, dtype=torch.float64)
    assert fast.attn[0]._alphabet_hits(alpha, x) is not None  # the same tokens on the CPU take the path
    assert fast.attn[0]._alphabet_hits(alpha.to("meta"), x.to("meta")) is None  # off the CPU: never
