"""Recurrent baselines for the curse of memory (Li, Han, E and Li 2021).

``linear_rnn``: a diagonal linear recurrence with N states,
    h_t = lambda * h_{t-1} + B x_t,   lambda_n in (0, 1),
read by y_t = C h_t + D x_t (``ffn_width: 0``) or an FFN of (h_t, x_t). Its
kernel is K(s) = sum_n C_n B_n lambda_n^s + D 1{s = 0}: a sum of N decaying
exponentials, the same span as N lin-RPE heads. It runs as a contraction with
lambda^s (last position) or a causal FFT convolution (all positions); the
step-by-step recurrence is the reference.

``lstm``: torch's LSTM with N units, read the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..convolution import causal_conv
from .block import FFN
from .fused import num_params


def _readout(cfg: ModelConfig, width: int) -> nn.Module:
    return FFN(width, cfg.ffn_width, 1) if cfg.ffn_width > 0 else nn.Linear(width, 1)


class LinearRNN(nn.Module):
    """x (B, T, d) -> y (B,) or (B, T)."""

    def __init__(self, cfg: ModelConfig, input_dim: int = 1, output: str = "last"):
        super().__init__()
        self.cfg, self.output = cfg, output
        N = cfg.hidden
        # lambda_n = sigmoid(decay_logit_n), spread from fast to slow decay
        self.decay_logit = nn.Parameter(torch.logit(torch.linspace(0.5, 0.999, N)))
        self.B = nn.Linear(input_dim, N, bias=False)
        self.readout = _readout(cfg, N + input_dim)

    @property
    def lam(self) -> torch.Tensor:
        return torch.sigmoid(self.decay_logit)

    def states(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        """h at the last position (B, 1, N) or at every position (B, T, N)."""
        T = x.shape[1]
        u = self.B(x)  # (B, T, N)
        powers = self.lam.to(x.dtype)[:, None] ** torch.arange(T, device=x.device, dtype=x.dtype)  # (N, T)
        if self.cfg.impl == "reference":
            h, out = torch.zeros_like(u[:, 0]), []
            for t in range(T):
                h = self.lam.to(x.dtype) * h + u[:, t]
                out.append(h)
            hs = torch.stack(out, 1)
            return hs[:, -1:] if last_only else hs
        if last_only:
            return torch.einsum("nt,btn->bn", powers.flip(-1), u)[:, None]
        return causal_conv(powers, u[..., None])[..., 0].to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.output == "last"
        h = self.states(x, last)
        xs = x[:, -1:] if last else x
        y = self.readout(torch.cat([h, xs], -1))[..., 0]
        return y[:, -1] if last else y

    def num_params(self) -> int:
        return num_params(self)


class LSTMBaseline(nn.Module):
    """x (B, T, d) -> y (B,) or (B, T), an LSTM with N units."""

    def __init__(self, cfg: ModelConfig, input_dim: int = 1, output: str = "last"):
        super().__init__()
        self.output = output
        self.lstm = nn.LSTM(input_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.readout = _readout(cfg, cfg.hidden + input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        if self.output == "last":
            return self.readout(torch.cat([h[:, -1], x[:, -1]], -1))[..., 0]
        return self.readout(torch.cat([h, x], -1))[..., 0]

    def num_params(self) -> int:
        return num_params(self)
