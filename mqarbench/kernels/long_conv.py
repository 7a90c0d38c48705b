"""Depthwise causal long convolution (Global Selection): FFT in fp32, direct conv as reference.

x (B, D, L), kernel (D, K): out_t = sum_{j<K} kernel[:, j] * x_{t-j}.
``long_conv_like_conv1d`` takes an nn.Conv1d depthwise weight (D, 1, K) instead, whose tap order
is the reverse (tap K-1 multiplies x_t), and a bias.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference


def long_conv_direct(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """O(L K) direct form: F.conv1d is a cross-correlation, hence the flipped kernel."""
    dim, width = kernel.shape
    padded = F.pad(x, (width - 1, 0))
    return F.conv1d(padded, kernel.flip(-1)[:, None, :], groups=dim)  # (B, D, L)


@lru_cache(maxsize=None)
def fft_length(n: int) -> int:
    """The smallest length >= n with no prime factor above 5: cuFFT and pocketfft transform such
    lengths at full speed, and it is often far below the next power of two (L + K - 1 = 639 at
    L = 512, K = 128: 640, not 1024)."""
    m = max(1, n)
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


def long_conv_fft(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """O(L log L) by FFT in fp32 (fp64 kept); the transform length >= L + K - 1 keeps the product linear,
    not circular, so the first L outputs are exactly the causal convolution."""
    length, width = x.shape[-1], kernel.shape[-1]
    n_fft = fft_length(length + width - 1)
    work = torch.promote_types(x.dtype, torch.float32)  # bf16 FFTs lose too much precision
    spectrum = torch.fft.rfft(x.to(work), n=n_fft) * torch.fft.rfft(kernel.to(work), n=n_fft)
    return torch.fft.irfft(spectrum, n=n_fft)[..., :length].to(x.dtype)  # (B, D, L)


def long_conv_like_conv1d(x: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """nn.Conv1d(D, D, K, groups=D, padding=K-1)(x)[..., :L] for x (B, D, L) and the module's
    weight (D, 1, K) and bias (D,), in >= fp32, by the dispatched long conv."""
    conv, _ = long_conv_impl(x.device)
    work = torch.promote_types(x.dtype, torch.float32)
    out = conv(x.to(work), weight[:, 0].flip(-1).to(work))  # (B, D, L)
    return out if bias is None else out + bias.to(work)[:, None]


def long_conv_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """FFT on every device (it is also the faster CPU path); the direct form when forced."""
    if use_reference():
        return long_conv_direct, KernelChoice("reference.long_conv_direct", False)
    return long_conv_fft, KernelChoice("torch.fft.long_conv_fft", True)
