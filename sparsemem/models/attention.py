"""Multi-head attention of docs/models.md, with its fast paths.

Head h at query position t puts weight w_h(t, s) on the value of x_{t-s}:

    logit_h(t, s) = <W_Q^h x_t, W_K^h x_{t-s}> + p_h phi(s)        (dp)
                  = p_h phi(s)                                      (dp_free)
                  = p_h (phi(s) - phi(w_h . x_t))                   (tmx)
    w_h(t, s) = softmax over s = 0..t of logit_h(t, s)               (normalize)
              = exp(logit_h(t, s))                                  (normalization-free)
    Attn_t = W_O concat_h sum_s w_h(t, s) W_V^h x_{t-s}

A query row with no admissible lag (a log-type head at t = 0) outputs 0.

``reference`` computes every (t, s) logit explicitly. ``fast`` computes the
same numbers faster:
  * last-position output: only the last query row is formed (O(B H T)); a
    dp_free head contracts over time before W_V (``attend_contracted``), and a
    first layer of any kind works on the raw tokens (``last_from_tokens``):
    its logits are affine in x_s, so the cost is O(B H T d), not O(B T D^2);
    where the task's one-coordinate tokens take a few known values (+-1), a
    softmax DP head's weights are summed per value by one matrix product
    (``alphabet_softmax``), so no (B, H, T) tensor is formed at all;
  * dp_free and tmx heads over all positions: a causal FFT convolution of the
    values with the head's kernel (float64 inside, so early rows stay exact for
    slowly decaying kernels); the softmax normalizer is a cumulative sum;
  * dp with softmax over all positions (``model.attention_kernel``): chunks of
    query rows with a hand-written backward that also gives the RPE its gradient
    (``BiasAttention``, the CPU's default); ``scaled_dot_product_attention``
    with the RPE as a float mask (the GPU's default); or a fused Triton kernel
    that trains the RPE's per-head parameters inside it (``flash.py``).
Note that with softmax, tmx's query term is constant over s and cancels:
tmx with ``normalize: true`` computes the same as dp_free.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, ModelConfig
from ..convolution import causal_conv
from .fused import (
    ALPHABET_LIMIT,
    BiasAttention,
    LinBiasAttention,
    TokenSoftmax,
    alphabet_softmax,
    masked_softmax,
    toeplitz_bias,
)
from .rpe import RPE


class Attention(nn.Module):
    """H-head attention; x (B, T, D) -> (B, T, D), or (B, 1, D) if last_only."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, H, hd = cfg.dim, cfg.heads, cfg.head_size
        self.heads, self.head_dim = H, hd
        self.kind = cfg.attention
        self.normalize = cfg.normalize
        self.impl = cfg.impl
        self.attention_kernel = cfg.attention_kernel
        if self.attention_kernel == "triton" and importlib.util.find_spec("triton") is None:
            raise ConfigError("model.attention_kernel = triton needs triton: pip install triton (or use auto)")
        # softmax dp over all positions through scaled_dot_product_attention; fleets switch it off
        # (vmap has no batching rule for SDPA's CPU kernel with a mask that needs a gradient)
        self.fused = True
        # the values a one-coordinate token takes, where the task says (Transformer sets it on its first layer):
        # last_from_tokens then sums weights per value with one matrix product; fleets switch it off
        self.token_values = None
        self.scale = 1.0 / math.sqrt(hd) if cfg.scale else 1.0
        if self.kind == "dp":
            self.q = nn.Linear(D, H * hd, bias=False)
            self.k = nn.Linear(D, H * hd, bias=False)
        elif self.kind == "tmx":
            self.w = nn.Linear(D, H, bias=False)  # w_h . x_t, O(D) parameters per head
        self.v = nn.Linear(D, H * hd, bias=False)
        self.o = nn.Linear(H * hd, D, bias=False)
        self.rpe = RPE(
            cfg.rpe, H, init=cfg.rpe_init, buckets=cfg.rpe_buckets, max_distance=cfg.rpe_max_distance, sign=cfg.rpe_sign
        )

    # -- pieces ---------------------------------------------------------------
    def _split(self, y: torch.Tensor) -> torch.Tensor:
        """(B, T, H*hd) -> (B, H, T, hd)."""
        B, T, _ = y.shape
        return y.view(B, T, self.heads, -1).transpose(1, 2)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, H, T, hd) -> (B, T, D) through W_O."""
        B, H, T, hd = y.shape
        return self.o(y.transpose(1, 2).reshape(B, T, H * hd))

    def logits(self, x: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
        """Explicit logits for query positions q_pos: (B or 1, H, Tq, T), -inf where s < 0."""
        T = x.shape[1]
        logits = toeplitz_bias(self.rpe(T, x.device, x.dtype), q_pos)[None]
        if self.kind == "dp":
            q = self._split(self.q(x[:, q_pos]))
            k = self._split(self.k(x))
            logits = logits + (q @ k.transpose(-1, -2)) * self.scale
        elif self.kind == "tmx":
            u = self.w(x[:, q_pos])  # (B, Tq, H)
            logits = logits - self.rpe.phi_real(u).transpose(1, 2)[..., None]
        return logits

    def _attend(self, x: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x, q_pos)
        w = masked_softmax(logits) if self.normalize else torch.exp(logits)
        return self._merge(w @ self._split(self.v(x)))

    # -- forward --------------------------------------------------------------
    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        if self.impl == "reference":
            return self.reference(x, last_only)
        return self.fast(x, last_only)

    def reference(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Every query row, explicitly; the last row only kept if last_only."""
        T = x.shape[1]
        out = self._attend(x, torch.arange(T, device=x.device))
        return out[:, -1:] if last_only else out

    def fast(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        B, T, _ = x.shape
        if last_only:
            if self.kind == "dp_free":
                u = torch.einsum("hs,bsd->bhd", self.lag_weights(T, x.device, x.dtype, reverse=True), x)
                return self.attend_contracted(u)
            return self._attend(x, torch.tensor([T - 1], device=x.device))
        if self.kind in ("dp_free", "tmx"):
            return self._conv(x)
        if self.normalize and self.fused:
            return self._softmax_all(x)
        return self._attend(x, torch.arange(T, device=x.device))

    def lag_weights(self, length: int, device, dtype, reverse: bool = False) -> torch.Tensor:
        """The RPE's weights over lags 0..length-1 at the last position: (H, length).

        The attention weights themselves for dp_free heads; ``reverse`` orders
        them by key position (lag length-1 first).
        """
        return self.weights_of(self.rpe(length, device, dtype, reverse=reverse))

    def weights_of(self, bias: torch.Tensor) -> torch.Tensor:
        """dp_free weights from the RPE's biases (..., H, S) over S lags: softmax over the lags, or exp."""
        return masked_softmax(bias, self._dead_last(bias.shape[-1])) if self.normalize else torch.exp(bias)

    def _dead_last(self, length: int) -> bool:
        """Whether the last query row of a length-`length` sequence can have no admissible key."""
        return self.rpe.inf_at_zero and length == 1

    def attend_contracted(self, u: torch.Tensor) -> torch.Tensor:
        """Last-position output from u_h = sum_s w_h(s) x_{T-1-s}, the weights already applied.

        u: (B, H, D). Returns (B, 1, D). Exact, since W_V is linear:
        sum_s w(s) W_V x_{T-1-s} = W_V sum_s w(s) x_{T-1-s}.
        """
        B, H, D = u.shape
        wv = self.v.weight.view(H, self.head_dim, D)
        out = torch.einsum("bhd,hkd->bhk", u, wv)  # (B, H, hd)
        return self.o(out.reshape(B, 1, H * self.head_dim))

    def last_from_tokens(self, x: torch.Tensor, embed: nn.Linear) -> torch.Tensor:
        """Last-position output of a first layer whose input is embed(x), in O(B H T d).

        Every logit is affine in the raw token x_s (d-dimensional): the dot
        product <W_Q h_t, W_K (W_E x_s + b_E)> = alpha . x_s + beta, and the
        weighted sum of embedded tokens is W_E (sum_s w(s) x_s) + b_E sum_s w(s).
        x: (B, T, d). Returns (B, 1, D).
        """
        B, T, d = x.shape
        H = self.heads
        h_last = embed(x[:, -1:])  # (B, 1, D)
        logits = self.rpe(T, x.device, x.dtype, reverse=True)[None]  # (1, H, T) by key position
        if self.kind == "dp":
            q = self.q(h_last).view(B, H, self.head_dim)
            wk = self.k.weight.view(H, self.head_dim, -1)  # (H, hd, D)
            qk = torch.einsum("bhk,hkd->bhd", q, wk)  # (B, H, D)
            alpha = (qk @ embed.weight) * self.scale  # (B, H, d)
        if self.kind == "dp" and self.normalize and not self._dead_last(T):
            # beta = <qk, b_E> is the same for every key: it cancels in the softmax
            hits = self._alphabet_hits(alpha, x)
            if hits is not None:
                u = alphabet_softmax(logits, alpha, hits, self.token_values)  # (B, H, 1)
            else:
                u, w = TokenSoftmax.apply(logits, alpha, x)  # (B, H, d), weights summing to 1
            sigma = None
        else:
            if self.kind == "dp":
                beta = (qk @ embed.bias) * self.scale  # (B, H)
                # alpha . x_s for every key; few token coordinates as broadcasts, not batched matmuls of width d
                ax = (alpha[:, :, None, :] * x[:, None]).sum(-1) if d <= 4 else torch.einsum("bhe,bte->bht", alpha, x)
                logits = logits + (ax + beta[..., None])
            elif self.kind == "tmx":
                logits = logits - self.rpe.phi_real(self.w(h_last[:, 0]))[..., None]
            w = masked_softmax(logits, self._dead_last(T)) if self.normalize else torch.exp(logits)  # (B or 1, H, T)
            if w.shape[0] == 1:  # weights shared by the batch (dp_free; tmx under softmax)
                # one (H, T) @ (T, B d) product: under vmap a fleet's members stack into its rows
                u = (w[0] @ x.transpose(0, 1).reshape(T, B * d)).view(H, B, d).transpose(0, 1)  # (B, H, d)
            else:
                u = (w[..., None] * x[:, None]).sum(2) if d <= 4 else torch.einsum("bht,bte->bhe", w, x)
            sigma = w.sum(-1)[..., None]  # (B or 1, H, 1)
        # W_V^h (W_E u_h + b_E sigma_h), with W_V^h W_E (H, hd, d) formed once instead of per sample
        wv = self.v.weight.view(H, self.head_dim, -1)  # (H, hd, D)
        a, c = wv @ embed.weight, wv @ embed.bias  # (H, hd, d), (H, hd)
        out = (u[:, :, None, :] * a).sum(-1) + (c if sigma is None else sigma * c)  # (B, H, hd)
        return self.o(out.reshape(B, 1, H * self.head_dim))

    def _alphabet_hits(self, alpha: torch.Tensor, x: torch.Tensor):
        """The (B, k, T) token-value indicators when ``alphabet_softmax`` computes this last row exactly
        (known values of a one-coordinate token, every token among them, |alpha| (v_max - v_min) within
        ALPHABET_LIMIT), else None. The check reads the data (one sync): compiled graphs skip it, and so do
        tensors off the CPU, where the path was never measured and the sync would stall the device queue."""
        vals = self.token_values
        if vals is None or x.shape[-1] != 1 or x.device.type != "cpu" or torch.compiler.is_compiling():
            return None
        hits = torch.stack([x[..., 0] == v for v in vals], 1)  # (B, k, T); the values are distinct
        pull = alpha.detach().abs().amax() * (max(vals) - min(vals))
        return hits if bool((hits.sum() == x.numel()) & (pull <= ALPHABET_LIMIT)) else None

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """DP-free / TMX heads over all positions as a causal FFT convolution."""
        B, T, _ = x.shape
        bias = self.rpe(T, x.device, torch.float64)  # (H, T)
        v = self.v(x).view(B, T, self.heads, self.head_dim)
        if self.normalize:
            finite = torch.where(torch.isfinite(bias), bias, torch.full_like(bias, -1e300))
            kernel = torch.exp(bias - finite.amax(-1, keepdim=True).detach())
            z = torch.cumsum(kernel, -1).T[None, :, :, None]  # (1, T, H, 1)
            out = causal_conv(kernel, v) / torch.where(z > 0, z, torch.ones_like(z))
        else:
            out = causal_conv(torch.exp(bias), v)
            if self.kind == "tmx":
                u = self.w(x).to(torch.float64)  # (B, T, H)
                out = out * torch.exp(-self.rpe.phi_real(u))[..., None]
        return self._merge(out.to(x.dtype).permute(0, 2, 1, 3))

    def softmax_kernel(self, device) -> str:
        """Which kernel runs softmax DP attention over all positions on a device: ``model.attention_kernel``,
        with auto as chunked on a CPU and sdpa elsewhere (the Triton kernel is chosen by name until it is
        measured faster on a GPU: benchmarks/attention_speed.py, benchmarks/lm_speed.py)."""
        if self.attention_kernel != "auto":
            return self.attention_kernel
        return "chunked" if torch.device(device).type == "cpu" else "sdpa"

    def _softmax_all(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax DP attention over all positions: x (B, T, D) -> (B, T, D)."""
        q, k, v = (self._split(f(x)) for f in (self.q, self.k, self.v))
        return self._merge(self.softmax_qkv(q, k, v, self.softmax_kernel(x.device)))

    def softmax_qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
        """Causal softmax attention of (B, H, T, hd) heads under this layer's RPE through one kernel: chunked
        (``BiasAttention``: faster on a CPU than the fused kernel, frozen bias or not, and no math kernel
        for a trainable one), triton (``flash.flash_lag_attention``) or sdpa (the RPE as a float mask; a
        trainable lin bias without a mask gradient, ``LinBiasAttention``)."""
        T = q.shape[-2]
        if kernel == "triton":
            from .flash import flash_lag_attention  # imports triton

            return flash_lag_attention(q, k, v, self.rpe, self.scale)
        if kernel == "chunked":
            bias = self.rpe(T, q.device, q.dtype)
            return BiasAttention.apply(q, k, v, bias, self.scale, self.rpe.inf_at_zero)
        if self.rpe.kind == "lin" and self.rpe.trainable_p and torch.is_grad_enabled():
            return LinBiasAttention.apply(q, k, v, self.rpe.p.to(q.dtype), self.scale)
        return self._sdpa(q, k, v)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Softmax DP attention through the fused kernel, the RPE as a float mask: (B, H, T, hd)."""
        T = q.shape[-2]
        bias = self.rpe(T, q.device, q.dtype)
        mask = toeplitz_bias(bias, torch.arange(T, device=q.device))  # (H, T, T)
        # the one row without any admissible key (log-type at t = 0) is computed
        # on key 0 with bias 0 and zeroed afterwards (static: no data-dependent branch)
        dead = self.rpe.inf_at_zero
        if dead:
            first = torch.zeros(T, T, dtype=torch.bool, device=q.device)
            first[0, 0] = True
            mask = torch.where(first, torch.zeros_like(mask), mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None], scale=self.scale)
        if dead:
            out = torch.cat([torch.zeros_like(out[:, :, :1]), out[:, :, 1:]], 2)
        return out

    def kernels(self, length: int) -> torch.Tensor:
        """The positional weights over lags 0..length-1 at the last position: (H, length), float64.

        For dp_free heads (and tmx under softmax) these are the attention weights
        themselves; for dp heads they are the RPE part only.
        """
        with torch.no_grad():
            return self.lag_weights(length, self.v.weight.device, torch.float64)
