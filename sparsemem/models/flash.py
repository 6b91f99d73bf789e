"""Fused causal softmax attention with a lag-indexed bias whose per-head parameters train, in Triton.

Head h scores key j from query i as ``scale q_i . k_j + b_h(i - j)`` for j <= i. The bias table
b (H, T) comes from the RPE (lin -p_h s, log -p_h log s, t5, kerple, alibi); its parameters are per
head: p_h (and a_h for kerple). The kernel is flash attention (tiles of queries and keys, an online
softmax, the (T, T) scores never stored), and its backward gives the RPE's parameters their gradient
without a per-lag scatter:

    dL/dtheta_h = sum_{b, i >= j} dS_bhij J_h(i - j),   J_h(s) = d b_h(s) / d theta_h,

where dS = P (dO v^T - D) as in every attention backward and the Jacobian tables J (one per
parameter tensor, (H, T) each) come from one forward-mode pass through the RPE. Each program of the
key-block backward reduces its own tiles' dS J to one number per parameter and writes it to a slot of
its own: no atomics, so nothing contends (FlexAttention with a bias that needs a gradient scatters
every score into its lag and ran some 130x slower than with a frozen bias on an H100).

A query row without an admissible key (a log-type head at i = 0: b_h(0) = -inf) outputs 0.

On a GPU the kernels compile; on a CPU they run through Triton's interpreter (numpy, slow: for
tests, which check them against the reference attention and a language model's losses against the
chunked kernel's). This module imports
triton; callers import it only when they use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import torch
import torch.autograd.forward_ad as fwAD

if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # no GPU: Triton's interpreter runs the kernels on CPU tensors
import triton  # noqa: E402  (the mode is read when triton and its kernels are first defined)
import triton.language as tl  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _tile(X, base, offs, offs_d, st, sd, T, HD):
    """A (len(offs), BD) tile of rows offs of one (batch, head) of X, zeros past T and HD."""
    mask = (offs < T)[:, None] & (offs_d < HD)[None, :]
    return tl.load(X + base + offs[:, None] * st + offs_d[None, :] * sd, mask=mask, other=0.0)


@triton.jit
def _put(X, value, base, offs, offs_d, st, sd, T, HD):
    """Store a tile where _tile loads it (rows below T, columns below HD)."""
    mask = (offs < T)[:, None] & (offs_d < HD)[None, :]
    tl.store(X + base + offs[:, None] * st + offs_d[None, :] * sd, value.to(X.dtype.element_ty), mask=mask)


@triton.jit
def _scores(q, k, BIAS, h, T, offs_m, offs_n, scale, PREC: tl.constexpr):
    """Scores scale q_i . k_j + b_h(i - j) of a tile, -inf where j > i or past T; and the lags."""
    lag = offs_m[:, None] - offs_n[None, :]
    ok = (lag >= 0) & (offs_n < T)[None, :] & (offs_m < T)[:, None]
    b = tl.load(BIAS + h * T + lag, mask=ok, other=float("-inf"))
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale + b
    return tl.where(ok, s, float("-inf")), lag, ok


@triton.jit
def _grad_scores(q, k, v, do, lse, delta, BIAS, h, T, offs_m, offs_n, scale, PREC: tl.constexpr):
    """The tile's weights P = exp(s - lse) and dS = P (dO v^T - D), with its lags and admissible mask."""
    s, lag, ok = _scores(q, k, BIAS, h, T, offs_m, offs_n, scale, PREC)
    p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)  # a row with lse = inf (nothing admissible) gives 0
    dp = tl.dot(do, tl.trans(v), input_precision=PREC)
    return p, p * (dp - delta[:, None]), lag, ok


@triton.jit
def _program(H, sb, sh, BLOCK: tl.constexpr):
    """This program's block start along T, its (batch, head) index bh, head h and base offset."""
    bh = tl.program_id(1)
    return tl.program_id(0) * BLOCK, bh, bh % H, (bh // H) * sb + (bh % H) * sh


@triton.jit
def _row_stats(LSE, DELTA, bh, T, offs_m):
    """The forward's log-sum-exp and D_i = dO_i . O_i of the rows offs_m (inf and 0 past T)."""
    lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=float("inf"))
    return lse, tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)


@triton.jit
def _forward(
    Q, K, V, BIAS, O, LSE,
    sb, sh, st, sd,  # strides of q, k, v and o (all contiguous alike)
    H, T, HD, scale,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One block of BM query rows of one (batch, head): O and the row log-sum-exp LSE."""
    start_m, bh, h, base = _program(H, sb, sh, BM)
    offs_m = start_m + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    q = _tile(Q, base, offs_m, offs_d, st, sd, T, HD)
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, BD], tl.float32)
    for start_n in range(0, tl.minimum(start_m + BM, T), BN):  # causal: no key past the block's last query
        offs_n = start_n + tl.arange(0, BN)
        k = _tile(K, base, offs_n, offs_d, st, sd, T, HD)
        v = _tile(V, base, offs_n, offs_d, st, sd, T, HD)
        s, _, _ = _scores(q, k, BIAS, h, T, offs_m, offs_n, scale, PREC)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new > float("-inf"), m_new, 0.0)  # a row with nothing admissible yet stays at 0
        alpha = tl.exp(m_i - m_use)
        p = tl.exp(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new
    alive = l_i > 0
    l_safe = tl.where(alive, l_i, 1.0)
    _put(O, acc / l_safe[:, None], base, offs_m, offs_d, st, sd, T, HD)
    lse = tl.where(alive, tl.where(m_i > float("-inf"), m_i, 0.0) + tl.log(l_safe), float("inf"))
    tl.store(LSE + bh * T + offs_m, lse, mask=offs_m < T)


@triton.jit
def _backward_kv(
    Q, K, V, BIAS, JAC, DO, LSE, DELTA, DK, DV, G,
    sb, sh, st, sd,
    H, T, HD, scale, NB,
    NJ: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One block of BN keys of one (batch, head): dK, dV, and this block's share of sum dS J for each of
    the NJ (at most 2) Jacobian tables, written to G[bh, block, :]."""
    start_n, bh, h, base = _program(H, sb, sh, BN)
    offs_n = start_n + tl.arange(0, BN)
    offs_d = tl.arange(0, BD)
    k = _tile(K, base, offs_n, offs_d, st, sd, T, HD)
    v = _tile(V, base, offs_n, offs_d, st, sd, T, HD)
    dk = tl.zeros([BN, BD], tl.float32)
    dv = tl.zeros([BN, BD], tl.float32)
    g0 = tl.zeros([BN], tl.float32)
    g1 = tl.zeros([BN], tl.float32)
    for start_m in range(start_n - start_n % BM, T, BM):  # causal: only queries at or after the block
        offs_m = start_m + tl.arange(0, BM)
        q = _tile(Q, base, offs_m, offs_d, st, sd, T, HD)
        do = _tile(DO, base, offs_m, offs_d, st, sd, T, HD)
        lse, delta = _row_stats(LSE, DELTA, bh, T, offs_m)
        p, ds, lag, ok = _grad_scores(q, k, v, do, lse, delta, BIAS, h, T, offs_m, offs_n, scale, PREC)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
        if NJ > 0:
            g0 += tl.sum(ds * tl.load(JAC + h * T + lag, mask=ok, other=0.0), 0)
        if NJ > 1:
            g1 += tl.sum(ds * tl.load(JAC + (H + h) * T + lag, mask=ok, other=0.0), 0)
    _put(DK, dk * scale, base, offs_n, offs_d, st, sd, T, HD)
    _put(DV, dv, base, offs_n, offs_d, st, sd, T, HD)
    slot = (bh * NB + tl.program_id(0)) * 2
    if NJ > 0:
        tl.store(G + slot, tl.sum(g0, 0))
    if NJ > 1:
        tl.store(G + slot + 1, tl.sum(g1, 0))


@triton.jit
def _backward_q(
    Q, K, V, BIAS, DO, LSE, DELTA, DQ,
    sb, sh, st, sd,
    H, T, HD, scale,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One block of BM query rows of one (batch, head): dQ."""
    start_m, bh, h, base = _program(H, sb, sh, BM)
    offs_m = start_m + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    q = _tile(Q, base, offs_m, offs_d, st, sd, T, HD)
    do = _tile(DO, base, offs_m, offs_d, st, sd, T, HD)
    lse, delta = _row_stats(LSE, DELTA, bh, T, offs_m)
    dq = tl.zeros([BM, BD], tl.float32)
    for start_n in range(0, tl.minimum(start_m + BM, T), BN):
        offs_n = start_n + tl.arange(0, BN)
        k = _tile(K, base, offs_n, offs_d, st, sd, T, HD)
        v = _tile(V, base, offs_n, offs_d, st, sd, T, HD)
        _, ds, _, _ = _grad_scores(q, k, v, do, lse, delta, BIAS, h, T, offs_m, offs_n, scale, PREC)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    _put(DQ, dq * scale, base, offs_m, offs_d, st, sd, T, HD)


def _check_device(q: torch.Tensor) -> bool:
    """Whether the kernels run interpreted; CPU tensors need the interpreter."""
    if q.device.type == "cpu" and not INTERPRETED:
        raise RuntimeError(
            "the Triton attention kernel runs on CPU tensors only under Triton's interpreter: set "
            "TRITON_INTERPRET=1 before triton is imported, or use model.attention_kernel = auto"
        )
    return INTERPRETED


def _blocks(T: int, hd: int, interpret: bool) -> dict:
    """Tile sizes: 64 x 64 on a GPU; 16 under the interpreter (small tests cross several tiles)."""
    block = 16 if interpret else 64
    return {"BM": block, "BN": block, "BD": max(16, triton.next_power_of_2(hd))}


def _launch(interpret: bool) -> dict:
    return {} if interpret else {"num_warps": 4, "num_stages": 2}


def _on(q: torch.Tensor):
    """Launch on q's GPU, not whichever is current (nothing to choose under the interpreter)."""
    return torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()


class _FlashLagAttention(torch.autograd.Function):
    """out = softmax(scale q k^T + b(i - j), causal) v; theta's gradient through the Jacobian tables.

    q, k, v: (B, H, T, hd). bias: (H, T), the lag-indexed table, -inf where a lag is inadmissible.
    jac: (NJ, H, T), d bias / d theta (zero where bias is -inf). theta: (NJ, H), the per-head parameters
    the tables belong to (only their gradient is used).
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, jac, theta, scale):
        q, k, v = (t.contiguous() for t in (q, k, v))
        B, H, T, hd = q.shape
        interpret = _check_device(q)
        blocks = _blocks(T, hd, interpret)
        prec = "ieee" if q.dtype in (torch.float32, torch.float64) else "tf32"
        bias = bias.detach().to(torch.float32).contiguous()
        out = torch.empty_like(q)
        lse = torch.empty(B * H, T, device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(T, blocks["BM"]), B * H)
        with _on(q):
            _forward[grid](
                q, k, v, bias, out, lse, *q.stride(), H, T, hd, float(scale), PREC=prec, **blocks, **_launch(interpret)
            )
        ctx.save_for_backward(q, k, v, bias, jac.detach().to(torch.float32).contiguous(), out, lse)
        ctx.scale, ctx.prec, ctx.nj = float(scale), prec, jac.shape[0]
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, bias, jac, out, lse = ctx.saved_tensors
        B, H, T, hd = q.shape
        interpret = _check_device(q)
        blocks = _blocks(T, hd, interpret)
        dout = dout.to(q.dtype).contiguous()
        delta = (dout.float() * out.float()).sum(-1).reshape(B * H, T)  # D_i = dO_i . O_i
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        nb = triton.cdiv(T, blocks["BN"])
        nj = ctx.nj if ctx.needs_input_grad[5] else 0
        g = torch.zeros(B * H, nb, 2, device=q.device, dtype=torch.float32)
        common = dict(PREC=ctx.prec, **blocks, **_launch(interpret))
        with _on(q):
            _backward_kv[(nb, B * H)](
                q, k, v, bias, jac, dout, lse, delta, dk, dv, g, *q.stride(), H, T, hd, ctx.scale, nb, NJ=nj, **common
            )
            _backward_q[(triton.cdiv(T, blocks["BM"]), B * H)](
                q, k, v, bias, dout, lse, delta, dq, *q.stride(), H, T, hd, ctx.scale, **common
            )
        dtheta = None
        if nj:
            dtheta = g.view(B, H, nb, 2).sum((0, 2))[:, :nj].T.contiguous()  # (NJ, H)
        return dq, dk, dv, None, None, dtheta, None


def lag_jacobians(rpe, length: int, device, grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The RPE's bias table over lags 0..length-1 (H, T) with, for each of its trainable per-head parameter
    tensors (log p, log a or a sign-free p, each (H,)), the table's derivative by it: jac (NJ, H, T) and
    theta (NJ, H), the parameters stacked so that autograd routes their gradients home.

    Each head's bias depends on that head's parameters only, so one forward-mode pass with a tangent of
    ones per tensor gives every head's derivative at once. ``grad=False``: no tables (NJ = 0).
    """
    stored = rpe._stored()
    names = [n for n, t in stored.items() if grad and isinstance(t, torch.nn.Parameter) and t.requires_grad]

    def table(*values):
        return rpe.bias_of(rpe.scales({**stored, **dict(zip(names, values))}), length, device, torch.float32)

    values = tuple(stored[n].detach().float() for n in names)
    bias = table(*values).detach()
    jacs = []
    for i in range(len(names)):
        with fwAD.dual_level(), warnings.catch_warnings():
            # forward AD loads torch's jvp decompositions once, which still go through torch.jit.script
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated")
            duals = [fwAD.make_dual(t, torch.ones_like(t)) if j == i else t for j, t in enumerate(values)]
            d = fwAD.unpack_dual(table(*duals)).tangent
        jacs.append(torch.where(torch.isfinite(bias), d, torch.zeros_like(bias)))
    H = bias.shape[0]
    jac = torch.stack(jacs) if jacs else bias.new_zeros(0, H, length)
    theta = torch.stack([stored[n].float() for n in names]) if names else bias.new_zeros(0, H)
    return bias, jac, theta


@torch.compiler.disable
def flash_lag_attention(q, k, v, rpe, scale: float) -> torch.Tensor:
    """Causal softmax attention of (B, H, T, hd) q, k, v under the RPE's lag bias, fused in Triton.

    Kept out of torch.compile's graphs (a graph break a layer): the kernels are compiled already, and
    dynamo need not trace the forward-mode Jacobians or the kernel launches."""
    T = q.shape[-2]
    if rpe.entry.table:
        raise ValueError(f"rpe {rpe.kind!r} has parameters per lag: the Triton kernel trains per-head ones")
    bias, jac, theta = lag_jacobians(rpe, T, q.device, grad=torch.is_grad_enabled())
    if jac.shape[0] > 2:  # the key-block kernel keeps two sums of dS J
        raise ValueError(f"rpe {rpe.kind!r} has {jac.shape[0]} trainable per-head tensors: the Triton kernel takes 2")
    return _FlashLagAttention.apply(q, k, v, bias, jac, theta, scale)
