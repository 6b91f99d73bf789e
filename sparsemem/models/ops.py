"""Kernels the models share, each beside the plain computation it replaces.

- ``causal_conv``: a causal convolution by FFT (DP-free heads over all
  positions, the linear recurrence, and the kernel tasks' targets).
- ``toeplitz_bias`` with ``_Toeplitz``: lag-indexed biases to a (T, T) mask whose
  gradient sums diagonals with one skew instead of T^2 scattered adds.
- ``_LinBiasAttention``: softmax attention with a trainable lin bias through the
  fused kernel, the gradient of p from one more fused forward.
- ``_TokenSoftmax``: the last query row of a first-layer head from the raw tokens.
- ``masked_softmax``: softmax whose all -inf rows give zeros.

Every one has a reference it is tested against (tests/test_models.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def num_params(module: nn.Module) -> int:
    """The number of trainable and fixed parameters of a model."""
    return sum(p.numel() for p in module.parameters())


def lag_matrix(q_pos: torch.Tensor, T: int) -> torch.Tensor:
    """lag[t, j] = q_pos[t] - j for key positions j = 0..T-1: (Tq, T)."""
    return q_pos[:, None] - torch.arange(T, device=q_pos.device)[None, :]


class _Toeplitz(torch.autograd.Function):
    """bias (H, T) -> bias[:, max(t - j, 0)] (H, T, T), whose gradient sums diagonals.

    Autograd's own gradient of that gather scatter-adds T^2 entries into T lags
    (T per lag), which serializes on a GPU's atomics. The diagonal sums come
    from one skew instead: flipping the key axis and padding each row by T makes
    row-major offsets put lag t - j in column c = t + (T - 1 - j) of a
    (T, 2T - 1) view. Entries above the diagonal (future keys) are left out of
    the gradient: the caller masks them to -inf, so theirs is zero anyway.
    """

    generate_vmap_rule = True  # fleets (torch.func.vmap) batch it like any other op

    @staticmethod
    def forward(bias: torch.Tensor) -> torch.Tensor:
        T = bias.shape[-1]
        pos = torch.arange(T, device=bias.device)
        return bias[:, lag_matrix(pos, T).clamp(min=0)]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        H, T, _ = grad.shape
        skew = F.pad(grad.flip(-1), (0, T)).reshape(H, 2 * T * T)[:, : T * (2 * T - 1)]
        return skew.reshape(H, T, 2 * T - 1).sum(1)[:, T - 1 :]


def toeplitz_bias(bias: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
    """(H, T) lag-indexed biases -> (H, Tq, T) position-indexed, -inf for future keys."""
    H, T = bias.shape
    lag = lag_matrix(q_pos, T)
    if len(q_pos) == T and bias.requires_grad:  # every query row (q_pos = 0..T-1): diagonal-sum gradient
        full = _Toeplitz.apply(bias)
    else:
        full = bias[:, lag.clamp(min=0)]
    return full.masked_fill(lag[None] < 0, -math.inf)


def lin_bias_mask(p: torch.Tensor, T: int) -> torch.Tensor:
    """The lin RPE as a float mask: -p_h (i - j) for keys j <= i, -inf after: (H, T, T)."""
    pos = torch.arange(T, device=p.device)
    lag = lag_matrix(pos, T).to(p.dtype)
    return torch.where(lag >= 0, -p[:, None, None] * lag, torch.full_like(lag, -math.inf))


class _LinBiasAttention(torch.autograd.Function):
    """Softmax attention with a trainable lin bias -p_h (i - j), all through the fused kernel.

    A mask that needs a gradient sends scaled_dot_product_attention to its
    slow math kernel on a CPU. For a lin bias the gradient of p needs no
    per-entry scores: with P the attention weights and dS_ij = P_ij (dO_i . V_j
    - D_i), D_i = dO_i . O_i, the rows of dS sum to zero, so

        dL/dp_h = sum_ij dS_ij (j - i) = sum_i (dO_i . O'_i - D_i m_i),

    where O'_i = sum_j P_ij j V_j and m_i = sum_j P_ij j come from one more
    fused forward over the values (j V_j, j). q, k and v get their gradients
    from the fused kernel with the bias frozen.
    """

    @staticmethod
    def forward(ctx, q, k, v, p, scale):
        T = q.shape[-2]
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale  # SDPA's default, pinned
        mask = lin_bias_mask(p.detach(), T)[None]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (q, k, v)]
            out = F.scaled_dot_product_attention(*leaves, attn_mask=mask, scale=scale)
        ctx.graph = (leaves, out, mask, scale)
        return out.detach()

    @staticmethod
    def backward(ctx, dout):
        (q, k, v), out, mask, scale = ctx.graph
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)
        with torch.no_grad():
            j = torch.arange(q.shape[-2], device=q.device, dtype=q.dtype)
            vj = torch.cat([v * j[:, None], j[:, None].expand(*v.shape[:-1], 1)], -1)  # (B, H, T, hd + 1)
            # the fused CPU kernel wants one head size for q, k and v: a zero column leaves q . k alone
            q1, k1 = (F.pad(t, (0, 1)) for t in (q, k))
            o2 = F.scaled_dot_product_attention(q1, k1, vj, attn_mask=mask, scale=scale)
            d = (dout * out).sum(-1)  # (B, H, T)
            dp = ((dout * o2[..., :-1]).sum(-1) - d * o2[..., -1]).sum((0, 2))
        ctx.graph = None
        return dq, dk, dv, dp, None


def _tmatmul(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w @ x for w (B, H, T), x (B, T, d) as (x^T w^T)^T: with few columns d, the CPU's batched
    matrix-vector kernel is some 3x slower than this layout (measured for B = 100, H = 64, T = 1000)."""
    return (x.transpose(1, 2) @ w.transpose(1, 2)).transpose(1, 2)


class _TokenSoftmax(torch.autograd.Function):
    """u = sum_t w_t x_t with w = softmax_t(bias_t + a . x_t): the last query row of a first-layer head.

    bias: (1 or B, H, T); a: (B, H, d); x: (B, T, d). Returns u: (B, H, d).
    Autograd through the plain ops keeps some six (B, H, T) intermediates and
    makes as many passes over them; here the backward comes from w alone:

        dl_t = w_t (du . x_t - du . u),   d bias = dl (summed over a shared batch),
        d a = sum_t dl_t x_t,             d x_t = sum_h (w_t du + dl_t a).

    A constant added to every logit of a row (the query's dot product with b_E)
    cancels in the softmax, so callers leave it out.
    """

    generate_vmap_rule = True  # fleets (torch.func.vmap) batch it like any other op

    @staticmethod
    def forward(bias, a, x):
        if x.shape[-1] == 1:  # one token coordinate: a broadcast, not a batched matmul of inner size 1
            logits = torch.addcmul(bias, a, x.transpose(1, 2))
        else:
            logits = torch.baddbmm(bias.expand(a.shape[0], -1, -1), a, x.transpose(1, 2))
        w = torch.softmax(logits, -1)  # (B, H, T)
        return _tmatmul(w, x), w

    @staticmethod
    def setup_context(ctx, inputs, output):
        bias, a, x = inputs
        u, w = output
        ctx.save_for_backward(a, x, u, w)
        ctx.shared = bias.shape[0] == 1 and a.shape[0] != 1
        ctx.mark_non_differentiable(w)

    @staticmethod
    def backward(ctx, du, _dw):
        a, x, u, w = ctx.saved_tensors
        if x.shape[-1] == 1:
            dl = (x.transpose(1, 2) - u).mul_(w).mul_(du)  # du (x_t - u) w_t
        else:
            g = du @ x.transpose(1, 2)  # (B, H, T)
            dl = (g - (du * u).sum(-1, keepdim=True)).mul_(w)
        dbias = da = dx = None
        if ctx.needs_input_grad[0]:
            dbias = dl.sum(0, keepdim=True) if ctx.shared else dl
        if ctx.needs_input_grad[1]:
            da = _tmatmul(dl, x)
        if ctx.needs_input_grad[2]:
            dx = w.transpose(1, 2) @ du + dl.transpose(1, 2) @ a
        return dbias, da, dx


def masked_softmax(logits: torch.Tensor, dead_rows: bool = True) -> torch.Tensor:
    """Softmax over the last axis; rows that are all -inf give all zeros.

    ``dead_rows=False`` says no row is all -inf (known from the shapes), which
    skips the mask. The choice is static, never read from the data, so fleets
    (torch.func.vmap) can batch it.
    """
    if not dead_rows:
        return torch.softmax(logits, -1)
    alive = (logits > -math.inf).any(-1, keepdim=True)
    safe = torch.where(alive, logits, torch.zeros_like(logits))
    return torch.softmax(safe, -1) * alive.to(logits.dtype)


def causal_conv(kernel: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """out[b, t, k, c] = sum_{s<=t} kernel[k, s] v[b, t-s, k, c], by FFT in float64.

    kernel: (K, T); v: (B, T, K or 1, C): each of K channels with its own kernel (attention heads,
    recurrence states), or one signal under K kernels (a task's memories). Returns (B, T, K, C), float64.
    """
    T = v.shape[1]
    n = 2 * T
    fv = torch.fft.rfft(v.to(torch.float64), n=n, dim=1)  # (B, F, H, hd)
    fk = torch.fft.rfft(kernel.to(torch.float64), n=n, dim=1)  # (H, F)
    return torch.fft.irfft(fv * fk.T[None, :, :, None], n=n, dim=1)[:, :T]
