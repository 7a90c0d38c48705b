"""Depthwise causal long convolution (Global Selection), direct conv as the reference.

x (B, D, L), kernel (D, K): out_t = sum_{j<K} kernel[:, j] * x_{t-j}.
Two exact fast forms, both in (at least) fp32: FFT, O(L log L), and Toeplitz blocks, O(L K) but
on matrix units. On an H100 at d_inner 1536, B 32, L 512, K 128 the FFT form costs about as much
as a whole fused Mamba block; the blocked form is a few batched matmuls. CUDA takes the blocked
form up to BLOCKED_MAX_TAPS taps; the FFT form elsewhere (it is the faster one on CPUs).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference


def long_conv_direct(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """O(L K) direct form: F.conv1d is a cross-correlation, hence the flipped kernel."""
    dim, width = kernel.shape
    padded = F.pad(x, (width - 1, 0))
    return F.conv1d(padded, kernel.flip(-1)[:, None, :], groups=dim)  # (B, D, L)


def long_conv_fft(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """O(L log L) by FFT in fp32 (fp64 kept); the transform length >= L + K - 1 keeps the product linear,
    not circular, so the first L outputs are exactly the causal convolution."""
    length, width = x.shape[-1], kernel.shape[-1]
    n_fft = 1 << (length + width - 2).bit_length()  # next power of two >= L + K - 1
    work = torch.promote_types(x.dtype, torch.float32)  # bf16 FFTs lose too much precision
    spectrum = torch.fft.rfft(x.to(work), n=n_fft) * torch.fft.rfft(kernel.to(work), n=n_fft)
    return torch.fft.irfft(spectrum, n=n_fft)[..., :length].to(x.dtype)  # (B, D, L)


def long_conv_blocked(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Cut L into blocks of K; each output block is one (K, 2K) Toeplitz matrix of the kernel
    times the previous and the current input block: a batched matmul per channel."""
    batch, dim, length = x.shape
    kernel = kernel[:, :length]  # taps beyond L never reach an output
    taps = kernel.shape[-1]
    work = torch.promote_types(x.dtype, torch.float32)
    n_blocks = -(-length // taps)
    blocks = F.pad(x.to(work), (taps, n_blocks * taps - length)).view(batch, dim, n_blocks + 1, taps)
    windows = torch.cat([blocks[:, :, :-1], blocks[:, :, 1:]], dim=-1)  # (B, D, n_blocks, 2K)
    # output t of a block takes window position s at lag t + K - s; only lags 0..K-1 exist
    steps = torch.arange(2 * taps, device=x.device)
    lag = steps[:taps, None] + taps - steps[None, :]  # (K, 2K)
    toeplitz = kernel.to(work)[:, lag.clamp(0, taps - 1)] * ((lag >= 0) & (lag < taps))  # (D, K, 2K)
    out = torch.einsum("dts,bdns->bdnt", toeplitz, windows)  # (B, D, n_blocks, K)
    return out.reshape(batch, dim, n_blocks * taps)[..., :length].to(x.dtype)


BLOCKED_MAX_TAPS = 256  # past this the blocked form's O(L K) work overtakes the FFT's


def long_conv_impl(device: torch.device, taps: int | None = None) -> tuple[Callable, KernelChoice]:
    """Blocked on CUDA for kernels of known length up to BLOCKED_MAX_TAPS, FFT otherwise
    (``taps=None``: kernels as long as the sequence); the direct form when forced."""
    if use_reference():
        return long_conv_direct, KernelChoice("reference.long_conv_direct", False)
    if device.type == "cuda" and taps is not None and taps <= BLOCKED_MAX_TAPS:
        return long_conv_blocked, KernelChoice("torch.long_conv_blocked", True)
    return long_conv_fft, KernelChoice("torch.fft.long_conv_fft", True)
