"""The shared kernels of models/fused.py, each against the plain computation it replaces."""

import math

import pytest
import torch
from conftest import close

from sparsemem.convolution import causal_conv
from sparsemem.models.fused import num_params, toeplitz_bias
from sparsemem.models.rpe import RPE
from sparsemem.registry import RPES


@pytest.mark.parametrize("K,shared", [(3, False), (3, True), (1, False)])
def test_causal_conv_is_the_direct_causal_sum(K, shared, gen):
    """out[b, t, k, c] = sum_{s <= t} kernel[k, s] v[b, t - s, k, c], for K channels with their own kernel
    and for one signal under K kernels (the task form, v with one channel)."""
    B, T, C = 2, 17, 4
    kernel = torch.randn(K, T, generator=gen, dtype=torch.float64)
    v = torch.randn(B, T, 1 if shared else K, C, generator=gen, dtype=torch.float64)
    got = causal_conv(kernel, v)
    want = torch.zeros(B, T, K, C, dtype=torch.float64)
    for t in range(T):
        for s in range(t + 1):
            want[:, t] += kernel[:, s, None] * v[:, t - s]
    assert got.shape == (B, T, K, C) and got.dtype == torch.float64
    assert torch.allclose(got, want, atol=1e-12)


def test_num_params_counts_every_parameter_once():
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 1, bias=False))
    assert num_params(model) == 3 * 5 + 5 + 5


@pytest.mark.parametrize("T", [1, 2, 7, 33])
def test_toeplitz_gradient_sums_diagonals(T, gen):
    """The diagonal-sum gradient of the full Toeplitz bias equals autograd's gather gradient."""
    from sparsemem.models.fused import Toeplitz, lag_matrix, toeplitz_bias

    bias = torch.randn(3, T, generator=gen, dtype=torch.float64, requires_grad=True)
    pos = torch.arange(T)
    lag = lag_matrix(pos, T)
    upstream = torch.randn(3, T, T, generator=gen, dtype=torch.float64) * (lag >= 0)
    (toeplitz_bias(bias, pos) * upstream).nan_to_num(0.0).sum().backward()
    ours = bias.grad.clone()
    bias.grad = None
    plain = bias[:, lag.clamp(min=0)].masked_fill(lag[None] < 0, float("-inf"))
    (plain * upstream).nan_to_num(0.0).sum().backward()
    assert torch.allclose(ours, bias.grad, atol=1e-12)
    assert torch.autograd.gradcheck(lambda b: Toeplitz.apply(b) * (lag >= 0), (bias.detach().requires_grad_(),))


@pytest.mark.parametrize("scale", [None, 0.3])
def test_lin_bias_attention_gradient_of_p_without_a_mask_gradient(scale, gen):
    """The fused lin-bias path (p's gradient from one more fused forward over j V_j) against
    autograd through a float mask: outputs and the gradients of q, k, v and p."""
    from sparsemem.models.fused import LinBiasAttention, lin_bias_mask

    B, H, T, hd = 2, 3, 40, 4
    q, k, v = (torch.randn(B, H, T, hd, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    p = torch.tensor([0.05, 0.3, 1.2], dtype=torch.float64, requires_grad=True)
    w = torch.randn(B, H, T, hd, generator=gen, dtype=torch.float64)
    out = LinBiasAttention.apply(q, k, v, p, scale)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v, p))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=lin_bias_mask(p, T)[None], scale=scale)
    ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v, p))
    assert close(out, ref, 1e-10)
    for g, r in zip(grads, ref_grads):
        assert close(g, r, 1e-9)


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("shared", [True, False])
def test_token_softmax_against_autograd(d, shared, gen):
    """The first-layer last-row softmax (hand-written backward) against autograd through the plain
    ops, with a -inf bias entry (a log-type head's lag 0), a bias shared by the batch or not,
    and the gradient of the tokens too; under vmap (fleets) as well."""
    from torch.func import vmap

    from sparsemem.models.fused import TokenSoftmax

    B, H, T = 3, 4, 17
    bias = torch.randn(1 if shared else B, H, T, generator=gen, dtype=torch.float64)
    bias[..., -1] = -math.inf
    bias.requires_grad_()
    a = torch.randn(B, H, d, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(B, T, d, generator=gen, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(B, H, d, generator=gen, dtype=torch.float64)

    def plain(bias, a, x):
        return torch.softmax(bias + a @ x.transpose(1, 2), -1) @ x

    u, w = TokenSoftmax.apply(bias, a, x)
    ref = plain(bias, a, x)
    assert close(u, ref, 1e-12) and torch.allclose(w.sum(-1), torch.ones(B, H, dtype=torch.float64))
    grads = torch.autograd.grad((u * w_out).sum(), (bias, a, x))
    ref_grads = torch.autograd.grad((ref * w_out).sum(), (bias, a, x))
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape and torch.isfinite(g).all() and close(g, r, 1e-12)

    # a leading member axis, as a fleet's vmap over stacked parameters
    a2 = torch.stack([a.detach(), 2 * a.detach()]).requires_grad_()
    fleet = vmap(lambda a_: TokenSoftmax.apply(bias.detach(), a_, x.detach())[0])(a2)
    (g_fleet,) = torch.autograd.grad((fleet * w_out).sum(), a2)
    for i in range(2):
        ai = a2[i].detach().requires_grad_()
        single = plain(bias.detach(), ai, x.detach())
        assert close(fleet[i], single, 1e-12)
        assert close(g_fleet[i], torch.autograd.grad((single * w_out).sum(), ai)[0], 1e-12)


@pytest.mark.parametrize("first_row,rows,cols", [(0, 4, 4), (8, 5, 13), (3, 1, 7), (6, 6, 20)])
def test_diagonal_sums_against_a_loop(first_row, rows, cols, gen):
    """Per-lag sums of a block of rows by one skewed read, against summing entry by entry."""
    from sparsemem.models.fused import diagonal_sums

    x = torch.randn(2, rows, cols, generator=gen, dtype=torch.float64)
    want = torch.zeros(2, first_row + rows, dtype=torch.float64)
    for r in range(rows):
        for j in range(min(cols, first_row + r + 1)):
            want[:, first_row + r - j] += x[:, r, j]
    assert torch.equal(diagonal_sums(x, first_row), want)


@pytest.mark.parametrize("rows", [8, 16, 64])
@pytest.mark.parametrize("kind", sorted(RPES))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_bias_attention_in_chunks_against_autograd(kind, rows, dtype, tol, gen, monkeypatch):
    """The chunked attention (CPU path of every RPE) against autograd through a float mask: outputs and
    the gradients of q, k, v and of the RPE's own parameters, with one or several chunks of query rows,
    a last chunk cut short, and log-type heads whose row 0 sees no key."""
    import sparsemem.models.fused as ops

    monkeypatch.setattr(ops, "_chunk_rows", lambda q: rows)
    B, H, T, hd = 2, 3, 37, 4
    torch.manual_seed(1)
    rpe = RPE(kind, H, buckets=4, max_distance=11).to(dtype)
    with torch.no_grad():  # trained-looking parameters, not the initial ones
        for p in rpe.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype))
    q, k, v = (
        torch.randn(B, H, T, hd, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(3)
    )
    w = torch.randn(B, H, T, hd, generator=gen, dtype=torch.float64).to(dtype)
    leaves = [q, k, v, *rpe.parameters()]
    dead = rpe.inf_at_zero

    out = ops.BiasAttention.apply(q, k, v, rpe(T, dtype=dtype), 0.4, dead)
    grads = torch.autograd.grad((out * w).sum(), leaves)

    mask = toeplitz_bias(rpe(T, dtype=dtype), torch.arange(T))
    if dead:
        first = torch.zeros(T, T, dtype=torch.bool)
        first[0, 0] = True
        mask = torch.where(first, torch.zeros_like(mask), mask)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[None], scale=0.4)
    if dead:
        ref = torch.cat([torch.zeros_like(ref[:, :, :1]), ref[:, :, 1:]], 2)
    ref_grads = torch.autograd.grad((ref * w).sum(), leaves)
    assert close(out, ref, tol)
    for g, r in zip(grads, ref_grads):
        assert close(g, r, tol)
    if leaves[3:]:  # a trainable RPE gets a gradient that is not zero
        assert any(g.abs().sum() > 0 for g in grads[3:])


@pytest.mark.parametrize("values", [[-1.0, 1.0], [-1.0, 0.0, 1.0], [0.5, 2.0, -3.0]])
def test_alphabet_softmax_against_the_plain_softmax(values, gen):
    """Tokens of a few known values: the per-value sums by one product against the softmax over every
    position, value and gradients, with a -inf bias entry (a log-type head's lag 0) and biases spread over
    e^60; in float32 it is no further from the float64 truth than TokenSoftmax is."""
    from sparsemem.models.fused import TokenSoftmax, alphabet_softmax

    B, H, T = 5, 3, 200
    bias = 20 * torch.randn(1, H, T, generator=gen, dtype=torch.float64)
    bias[..., -1] = -math.inf
    bias.requires_grad_()
    a = (10 * torch.randn(B, H, 1, generator=gen, dtype=torch.float64)).requires_grad_()
    v = torch.tensor(values, dtype=torch.float64)
    x = v[torch.randint(0, len(values), (B, T, 1), generator=gen)]
    hits = torch.stack([x[..., 0] == val for val in values], 1)
    w_out = torch.randn(B, H, 1, generator=gen, dtype=torch.float64)
    ref = torch.softmax(bias + a @ x.transpose(1, 2), -1) @ x
    u = alphabet_softmax(bias, a, hits, values)
    assert u.shape == ref.shape and close(u, ref, 1e-12)
    grads = torch.autograd.grad((u * w_out).sum(), (bias, a))
    ref_grads = torch.autograd.grad((ref * w_out).sum(), (bias, a))
    for g, r in zip(grads, ref_grads):
        assert torch.isfinite(g).all() and close(g, r, 1e-10)

    b32, a32, x32 = bias.detach().float(), a.detach().float(), x.float()
    ours = (alphabet_softmax(b32, a32, hits, values).double() - ref).abs().max().item()
    theirs = (TokenSoftmax.apply(b32, a32, x32)[0].double() - ref).abs().max().item()
    assert ours <= max(theirs, 1e-6), (ours, theirs)


def test_alphabet_softmax_drops_positions_the_limit_keeps_in():
    """Why the caller bounds |a| (v_max - v_min): the one +1 token sits 2,000 below the other positions'
    bias, beyond the float64 shift, so its value's sum underflows and reads as the smallest float64
    (bias ~1,308 below the largest); a = 800 then pulls that phantom above the -1 tokens (u = +1) where the
    truth is u = -1. Past the limit the per-value sum is wrong; the model's check sends such rows to
    TokenSoftmax."""
    from sparsemem.models.fused import ALPHABET_LIMIT, alphabet_softmax

    bias = torch.tensor([[[-2000.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    x = torch.tensor([[[1.0], [-1.0], [-1.0], [-1.0]]], dtype=torch.float64)
    a = torch.tensor([[[800.0]]], dtype=torch.float64)
    truth = torch.softmax(bias + a @ x.transpose(1, 2), -1) @ x
    assert truth.item() == pytest.approx(-1.0) and 2 * a.item() > ALPHABET_LIMIT
    hits = torch.stack([x[..., 0] == v for v in (-1.0, 1.0)], 1)
    assert alphabet_softmax(bias, a, hits, (-1.0, 1.0)).item() == pytest.approx(1.0)
    within = torch.full_like(a, ALPHABET_LIMIT / 2)  # at the limit the -1 tokens win, as they truly do
    truth = torch.softmax(bias + within @ x.transpose(1, 2), -1) @ x
    assert close(alphabet_softmax(bias, within, hits, (-1.0, 1.0)), truth, 1e-12)
