"""Kernels the models share, each beside the plain computation it replaces.

- ``toeplitz_bias`` with ``Toeplitz``: lag-indexed biases to a (T, T) mask whose
  gradient sums diagonals with one skew instead of T^2 scattered adds.
- ``LinBiasAttention``: softmax attention with a trainable lin bias through the
  fused kernel, the gradient of p from one more fused forward.
- ``BiasAttention`` with ``diagonal_sums``: causal softmax attention with a
  lag-indexed bias, trainable or not, in chunks of query rows (the CPU's path
  for softmax DP over all positions).
- ``TokenSoftmax``: the last query row of a first-layer head from the raw tokens;
  ``alphabet_softmax``: the same row as one matrix product where the tokens
  take a few known values (the paper's +-1 inputs).
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


class Toeplitz(torch.autograd.Function):
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
        full = Toeplitz.apply(bias)
    else:
        full = bias[:, lag.clamp(min=0)]
    return full.masked_fill(lag[None] < 0, -math.inf)


def lin_bias_mask(p: torch.Tensor, T: int) -> torch.Tensor:
    """The lin RPE as a float mask: -p_h (i - j) for keys j <= i, -inf after: (H, T, T)."""
    pos = torch.arange(T, device=p.device)
    lag = lag_matrix(pos, T).to(p.dtype)
    return torch.where(lag >= 0, -p[:, None, None] * lag, torch.full_like(lag, -math.inf))


class LinBiasAttention(torch.autograd.Function):
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


def diagonal_sums(x: torch.Tensor, first_row: int) -> torch.Tensor:
    """Per-lag sums of a block of rows: x (H, R, C) holds rows i = first_row..first_row+R-1 of an
    (i, j) matrix over keys j = 0..C-1; returns (H, first_row + R) with sum over i - j = s at lag s.
    Entries with j > i are left out.

    One skew, as in ``Toeplitz``: padding each row on the left by R and reading the buffer with a row
    stride one longer than its width puts entry (r, j) in column s = R + j - r, which is the lag
    first_row + R - s for every row.
    """
    H, R, C = x.shape
    W = C + R
    buf = x.new_zeros(H, R * W + R)  # R more at the end: the last row's skewed read runs past its own
    buf[:, : R * W].view(H, R, W)[:, :, R:] = x
    sums = buf.as_strided((H, R, W), (R * W + R, W + 1, 1), buf.storage_offset()).sum(1)
    return sums[:, 1 : first_row + R + 1].flip(-1)


def _chunk_rows(q: torch.Tensor) -> int:
    """Query rows per chunk for ``BiasAttention``: about 4M scores a chunk (measured fastest on a CPU
    at B = 16, H = 8, T = 1024), at least 8 rows."""
    B, H, T, _ = q.shape
    return max(8, min(T, (1 << 22) // max(1, B * H * T)) // 8 * 8)


class BiasAttention(torch.autograd.Function):
    """Causal softmax attention with a lag-indexed bias b_h(i - j) that may be trained, in chunks of
    query rows, each with its own backward.

    ``scaled_dot_product_attention`` with a mask that needs a gradient takes its
    math kernel on a CPU: every (i, j) score is kept, as several (B, H, T, T)
    tensors. Here a chunk of rows i0..i1-1 forms its (B, H, R, i1) scores over
    the keys it may see (so half the work of a causal square is skipped), and
    the backward forms them again, chunk by chunk:

        P = softmax(q k^T scale + b),   dS = P (dO v^T - D),   D_i = dO_i . O_i,
        dq = dS k scale,   dk = dS^T q scale,   dv = P^T dO,   db_h(s) = sum_{b, i - j = s} dS.

    The bias's gradient comes per lag (``diagonal_sums``), so any RPE (lin, log,
    t5, kerple, learned) gets its own by the chain rule. With ``dead_first`` (a
    log-type head, whose row 0 has no admissible key) row 0 outputs 0.
    q, k, v: (B, H, T, hd); bias: (H, T) over lags 0..T-1, -inf where inadmissible.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, scale, dead_first):
        q, k, v = (t.contiguous() for t in (q, k, v))
        T = q.shape[-2]
        mask = toeplitz_bias(bias.detach(), torch.arange(T, device=q.device))  # (H, T, T)
        if dead_first:
            mask[:, 0, 0] = 0.0  # row 0 computed on key 0 and zeroed below
        qs, kt = q * scale, k.transpose(-1, -2)
        out = torch.empty_like(q)
        rows = _chunk_rows(q)
        for i0 in range(0, T, rows):
            i1 = min(T, i0 + rows)
            s = torch.matmul(qs[:, :, i0:i1], kt[..., :i1]).add_(mask[:, i0:i1, :i1])  # (B, H, R, i1)
            out[:, :, i0:i1] = torch.matmul(torch.softmax(s, -1), v[:, :, :i1])
        if dead_first:
            out[:, :, 0] = 0.0
        ctx.save_for_backward(q, k, v, out, mask)
        ctx.scale, ctx.dead_first = scale, dead_first
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, mask = ctx.saved_tensors
        scale = ctx.scale
        T = q.shape[-2]
        dout = dout.contiguous()
        if ctx.dead_first:
            dout = dout.clone()
            dout[:, :, 0] = 0.0  # row 0's output is the constant 0
        d = (dout * out).sum(-1, keepdim=True)  # (B, H, T, 1)
        qs, ks, kt, vt = q * scale, k * scale, k.transpose(-1, -2), v.transpose(-1, -2)
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        dbias = q.new_zeros(mask.shape[0], T) if ctx.needs_input_grad[3] else None
        rows = _chunk_rows(q)
        for i0 in range(0, T, rows):
            i1 = min(T, i0 + rows)
            p = torch.softmax(torch.matmul(qs[:, :, i0:i1], kt[..., :i1]).add_(mask[:, i0:i1, :i1]), -1)
            do = dout[:, :, i0:i1]
            ds = torch.matmul(do, vt[..., :i1]).sub_(d[:, :, i0:i1]).mul_(p)  # (B, H, R, i1)
            dq[:, :, i0:i1] = torch.matmul(ds, ks[:, :, :i1])
            dk[:, :, :i1] += torch.matmul(ds.transpose(-1, -2), qs[:, :, i0:i1])
            dv[:, :, :i1] += torch.matmul(p.transpose(-1, -2), do)
            if dbias is not None:
                dbias[:, :i1] += diagonal_sums(ds.sum(0), i0)
        return dq, dk, dv, dbias, None, None


def _tmatmul(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w @ x for w (B, H, T), x (B, T, d) as (x^T w^T)^T: with few columns d, the CPU's batched
    matrix-vector kernel is some 3x slower than this layout (measured for B = 100, H = 64, T = 1000)."""
    return (x.transpose(1, 2) @ w.transpose(1, 2)).transpose(1, 2)


class TokenSoftmax(torch.autograd.Function):
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
        ctx.set_materialize_grads(False)  # no (B, H, T) of zeros for w's gradient, which is never used

    @staticmethod
    def backward(ctx, du, _dw):
        if du is None:
            return None, None, None
        a, x, u, w = ctx.saved_tensors
        if x.shape[-1] == 1:
            dl = torch.addcmul(-(du * u), du, x.transpose(1, 2)).mul_(w)  # w_t (du x_t - du u): two passes
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


# alphabet_softmax's float64 shift: e^{bias - max + SHIFT} stays finite (T e^600 < e^709) and positions whose
# bias lies up to ~1300 below the head's largest keep their weight; ALPHABET_LIMIT bounds |a| (v_max - v_min),
# the most a token can move a logit against another, so that every position it drops sits over 600 below
# the row's largest logit (weight under e^-600). Past it callers take TokenSoftmax.
_SHIFT = 600.0
ALPHABET_LIMIT = 600.0


def alphabet_softmax(bias: torch.Tensor, a: torch.Tensor, hits: torch.Tensor, values) -> torch.Tensor:
    """``TokenSoftmax``'s u for one token coordinate that takes only the k ``values``, by plain autograd.

    Grouping the positions by token value, Z = sum_k e^{a v_k} P_k with P_k = sum_{t: x_t = v_k} e^{bias_t}:
    the (B, H, T) softmax becomes one (B k, T) @ (T, H) product (float64) and a softmax over k, and
    u = sum_k v_k softmax_k(a v_k + log P_k). bias: (1, H, T); a: (B, H, 1); hits: (B, k, T), whether
    token x_t is v_k, every token one of ``values``; |a| (v_max - v_min) at most ALPHABET_LIMIT (the caller
    checks both). Returns (B, H, 1).
    """
    f64 = torch.float64
    v = torch.tensor(values, dtype=f64, device=a.device)  # (k,)
    bias = bias.to(f64)  # before the shift: float32 would round bias - shift (~600) to 4e-5
    shift = bias.detach().amax(-1, keepdim=True) - _SHIFT  # (1, H, 1); any constant cancels
    e = torch.exp(bias - shift)[0]  # (H, T)
    p = (hits.to(f64) @ e.T).transpose(1, 2)  # (B, k, T) @ (T, H) -> (B, H, k)
    tiny = torch.finfo(f64).tiny  # a value absent from the row: weight 0, no log(0)
    pi = torch.softmax(a.to(f64) * v + p.clamp_min(tiny).log(), -1)  # (B, H, k)
    return (pi @ v)[..., None].to(a.dtype)


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
