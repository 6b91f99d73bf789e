"""Causal convolution by FFT: the one kernel tasks (memory kernels, Task III) and models (DP-free heads,
recurrences) share. It imports nothing of the project."""

from __future__ import annotations

import torch


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
