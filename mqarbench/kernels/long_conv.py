"""Depthwise causal long convolution (Global Selection): FFT in fp32, direct conv as reference.

x (B, D, L), kernel (D, K): out_t = sum_{j<K} kernel[:, j] * x_{t-j}.
``long_conv_like_conv1d`` takes an nn.Conv1d depthwise weight (D, 1, K) instead, whose tap order
is the reverse (tap K-1 multiplies x_t), and a bias. For Global Selection's short-ish kernels
(K << L) ``MQARBENCH_LONG_CONV=toeplitz`` takes a block-Toeplitz batched matmul instead of the FFT
(``long_conv_toeplitz``; under autocast it runs in bf16 with fp32 accumulation, as the authors'
nn.Conv1d does), and on CUDA ``MQARBENCH_LONG_CONV=triton`` Triton kernels (``long_conv_triton``:
Toeplitz blocks on tensor cores, no FFT intermediates; global_selection_inner_fn then takes the
gate from their epilogue). Left unset (``auto``), Global Selection takes the Triton kernels on
CUDA for layers of at least ``TRITON_FROM_WIDTH`` channels and the FFT otherwise: measured on an
H200 (docs/benchmarks.md), at ``paper`` (1536 channels) the Triton path's step is about 1.34x
mamba's against the FFT's 2x, while at ``small`` (256 channels) its launches cost more than they
save. The toeplitz form was slower than the FFT at both sizes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, env_choice, use_reference
from mqarbench.kernels.long_conv_triton import long_conv_triton
from mqarbench.kernels.triton_support import triton_available

GLOBAL_LONG_CONVS = ("auto", "fft", "toeplitz", "triton")  # MQARBENCH_LONG_CONV's values
# auto: the Triton kernels from this many channels (d_inner) on CUDA. Measured: faster than the
# FFT at 1536 (paper), slower at 256 (small, launch-bound); the threshold lies between the two.
TRITON_FROM_WIDTH = 1024


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


def toeplitz_blocks(kernel: torch.Tensor, block: int) -> torch.Tensor:
    """(D, P, 2P) per-channel matrices T with out_block_i = T @ [x_block_{i-1}; x_block_i]:
    T[d, t, s] = kernel[d, t + P - s] where 0 <= t + P - s < K (zero elsewhere); needs P >= K.
    Built as sliding windows of the flipped, zero-padded kernel (a view whose backward is a sum
    of windows, not a scatter): v[j] = kernel[2P - 1 - j], so T[d, t, s] = v[d, P - 1 - t + s]."""
    width = kernel.shape[-1]
    v = F.pad(kernel.flip(-1), (2 * block - width, block - 1))  # (D, 3P - 1)
    return v.unfold(-1, 2 * block, 1).flip(1)  # (D, P, 2P): window P - 1 - t is row t


def long_conv_toeplitz(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The causal convolution as one batched matmul per channel over blocks of P = max(K, 16)
    positions: each output block is its own block and the one before it times a (P, 2P)
    Toeplitz matrix. O(L K) work in matmuls (tensor cores under autocast) instead of FFTs."""
    batch, dim, length = x.shape
    block = max(kernel.shape[-1], 16)
    n_blocks = -(-length // block)
    xb = F.pad(x, (0, n_blocks * block - length)).view(batch, dim, n_blocks, block)  # (B, D, N, P)
    before = F.pad(xb, (0, 0, 1, 0))[:, :, :n_blocks]  # block i-1, zeros before the first
    pairs = torch.cat([before, xb], dim=-1)  # (B, D, N, 2P)
    pairs = pairs.permute(1, 0, 2, 3).reshape(dim, batch * n_blocks, 2 * block)  # (D, B N, 2P)
    out = torch.bmm(pairs, toeplitz_blocks(kernel, block).transpose(1, 2))  # (D, B N, P)
    out = out.view(dim, batch, n_blocks * block).permute(1, 0, 2)  # (B, D, N P)
    return out[..., :length]


def long_conv_like_conv1d(x: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """nn.Conv1d(D, D, K, groups=D, padding=K-1)(x)[..., :L] for x (B, D, L) and the module's
    weight (D, 1, K) and bias (D,), in >= fp32, by the dispatched long conv."""
    conv, _ = global_long_conv_impl(x.device, x.shape[1])
    work = torch.promote_types(x.dtype, torch.float32)
    # the Triton kernels take bf16 x as it is (bf16 matmul operands, as nn.Conv1d under autocast)
    # and sum in fp32: an fp32 copy of x would only add traffic
    x_in = x if conv is long_conv_triton else x.to(work)
    out = conv(x_in, weight[:, 0].flip(-1).to(work))  # (B, D, L) in work
    return out if bias is None else out + bias.to(work)[:, None]


def long_conv_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """FFT on every device (it is also the faster CPU path); the direct form when forced."""
    if use_reference():
        return long_conv_direct, KernelChoice("reference.long_conv_direct", False)
    return long_conv_fft, KernelChoice("torch.fft.long_conv_fft", True)


def global_long_conv_impl(device: torch.device, width: int | None = None) -> tuple[Callable, KernelChoice]:
    """Global Selection's long conv for layers of ``width`` channels (d_inner): as
    MQARBENCH_LONG_CONV says, the FFT (fft), the block-Toeplitz matmul (toeplitz) or the Triton
    kernels on CUDA (triton; else the FFT, saying why); unset (auto), the Triton kernels on CUDA
    from TRITON_FROM_WIDTH channels where Triton is there, the FFT otherwise; the reference when
    forced."""
    chosen = env_choice("MQARBENCH_LONG_CONV", GLOBAL_LONG_CONVS)
    if chosen == "auto":
        wide = width is not None and width >= TRITON_FROM_WIDTH
        chosen = "triton" if device.type == "cuda" and wide and triton_available()[0] else "fft"
    if use_reference() or chosen == "fft":
        return long_conv_impl(device)
    if chosen == "toeplitz":
        return long_conv_toeplitz, KernelChoice("torch.bmm.long_conv_toeplitz", True)
    ready, why = triton_available()
    if device.type == "cuda" and ready:
        return long_conv_triton, KernelChoice("triton.long_conv_triton", True)
    fft, choice = long_conv_impl(device)
    why = why or f"MQARBENCH_LONG_CONV=triton needs a CUDA device, not {device.type}"
    return fft, KernelChoice(choice.path, choice.fast, why)
