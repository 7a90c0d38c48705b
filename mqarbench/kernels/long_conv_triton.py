"""Depthwise causal long convolution (Global Selection) in Triton: forward and both gradients.

x (B, D, L), kernel (D, K): out[b, d, t] = sum_{j<K, j<=t} kernel[d, j] * x[b, d, t-j], the contract
of ``long_conv_direct``. For Global Selection's K (64-256) and L (<= 1024) the O(L K) direct form,
tiled over (channel block, time block) with the taps in a loop, avoids the fp32 FFT's padded
transforms and its (B, D, n_fft) complex intermediates. Loads may be bf16 or fp32; every product
is accumulated in fp32 and the output is fp32 (promote_types(x.dtype, float32); fp64 inputs are
computed in fp32). The kernel gradient is a deterministic two-stage reduction (per-split partial
sums, then one torch sum), no atomics.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

try:  # Triton ships with CUDA builds of torch; missing on CPU-only machines
    import triton
    import triton.language as tl
except Exception as err:  # noqa: BLE001 - any import failure means "no Triton path"
    triton = None
    _MISSING = f"triton not importable ({type(err).__name__})"
else:
    _MISSING = ""

BLOCK_D = 16  # channels per program: the tap weights are a (BLOCK_D,) vector load per tap
GRAD_BLOCK_J = 16  # taps per dkernel program
GRAD_BLOCK_T = 32  # times per dkernel step: its (BLOCK_D, T, J) gather is 8192 fp32 values
TARGET_PROGRAMS = 1024  # dkernel splits the batch until about this many programs run (~8 per SM)


if triton is not None:

    @triton.jit
    def _conv_kernel(src_ptr, w_ptr, out_ptr, D, L, K, N_TAPS, REVERSE: tl.constexpr,
                     BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
        """out[b, d, t] = sum_{j < N_TAPS} w[d, j] * src[b, d, t - j] (causal; forward) or
        src[b, d, t + j] (anti-causal; REVERSE, the input gradient). One program: one batch row,
        BLOCK_D channels x BLOCK_T times; the window it reads stays in L1/L2 across the taps."""
        pid_t, pid_d, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,)
        offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BD,)
        mask_d = offs_d < D
        rows = (b * D + offs_d).to(tl.int64) * L  # (BD,) row offsets; int64: B D L may pass 2^31
        acc = tl.zeros((BLOCK_D, BLOCK_T), dtype=tl.float32)
        # N_TAPS = min(K, L); of those, skip the taps that reach only before time 0 (causal) or
        # past L - 1 (anti-causal) from every time of this tile.
        if REVERSE:
            n_taps = tl.minimum(N_TAPS, L - pid_t * BLOCK_T)
        else:
            n_taps = tl.minimum(N_TAPS, (pid_t + 1) * BLOCK_T)
        for j in range(0, n_taps):
            w = tl.load(w_ptr + offs_d * K + j, mask=mask_d, other=0.0).to(tl.float32)  # (BD,)
            if REVERSE:
                pos = offs_t + j
            else:
                pos = offs_t - j
            ok = mask_d[:, None] & ((pos >= 0) & (pos < L))[None, :]  # zero padding both ends
            v = tl.load(src_ptr + rows[:, None] + pos[None, :], mask=ok, other=0.0)  # (BD, BT)
            acc += w[:, None] * v.to(tl.float32)
        keep = mask_d[:, None] & (offs_t < L)[None, :]
        tl.store(out_ptr + rows[:, None] + offs_t[None, :], acc, mask=keep)

    @triton.jit
    def _dkernel_kernel(dout_ptr, x_ptr, part_ptr, B, D, L, K, N_SPLIT,
                        BLOCK_D: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_T: tl.constexpr):
        """part[s, d, j] = sum_{b = s mod N_SPLIT, t >= j} dout[b, d, t] * x[b, d, t - j]: one
        program per (tap block, channel block, batch split), looping over its batch rows and
        time blocks with a (BD, BJ) fp32 accumulator."""
        pid_j, pid_d, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)  # (BJ,)
        offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BD,)
        mask_d = offs_d < D
        acc = tl.zeros((BLOCK_D, BLOCK_J), dtype=tl.float32)
        for b in range(split, B, N_SPLIT):
            rows = (b * D + offs_d).to(tl.int64) * L  # (BD,)
            # t >= j >= pid_j * BLOCK_J: earlier times meet no tap of this block
            for t0 in range(pid_j * BLOCK_J, L, BLOCK_T):
                offs_t = t0 + tl.arange(0, BLOCK_T)  # (BT,)
                g_ok = mask_d[:, None] & (offs_t < L)[None, :]
                g = tl.load(dout_ptr + rows[:, None] + offs_t[None, :], mask=g_ok, other=0.0)
                pos = offs_t[:, None] - offs_j[None, :]  # (BT, BJ) source times t - j
                ok = (pos >= 0) & (offs_t[:, None] < L) & (offs_j[None, :] < K)
                xv = tl.load(x_ptr + rows[:, None, None] + pos[None, :, :],
                             mask=mask_d[:, None, None] & ok[None, :, :], other=0.0)  # (BD, BT, BJ)
                acc += tl.sum(g.to(tl.float32)[:, :, None] * xv.to(tl.float32), axis=1)
        keep = mask_d[:, None] & (offs_j < K)[None, :]
        tl.store(part_ptr + split * D * K + offs_d[:, None] * K + offs_j[None, :], acc, mask=keep)


def triton_available() -> tuple[bool, str]:
    """(True, "") when the kernels are defined, else (False, why)."""
    return triton is not None, _MISSING


def _device_of(t: torch.Tensor):
    """Triton launches on the current CUDA device, so make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()


def _conv(src: torch.Tensor, kernel: torch.Tensor, reverse: bool) -> torch.Tensor:
    """Causal (or with ``reverse`` anti-causal) depthwise conv of contiguous src (B, D, L) with
    kernel (D, K), fp32 out (B, D, L)."""
    batch, dim, length = src.shape
    width = kernel.shape[1]
    # Time block: a power of two near L (<= 128, 512 B rows of fp32) so short L wastes few lanes.
    block_t = min(128, max(16, triton.next_power_of_2(length)))
    out = torch.empty(batch, dim, length, device=src.device, dtype=torch.float32)  # (B, D, L)
    grid = (triton.cdiv(length, block_t), triton.cdiv(dim, BLOCK_D), batch)
    with _device_of(src):
        _conv_kernel[grid](src, kernel, out, dim, length, width, min(width, length),
                           REVERSE=reverse, BLOCK_D=BLOCK_D, BLOCK_T=block_t, num_warps=4)
    return out


def _dkernel(dout: torch.Tensor, x: torch.Tensor, width: int) -> torch.Tensor:
    """fp32 (D, K) kernel gradient from contiguous dout and x (B, D, L)."""
    batch, dim, length = x.shape
    n_taps = min(width, length)  # taps >= L meet no (t, t - j) pair: their gradient is zero
    tiles = triton.cdiv(n_taps, GRAD_BLOCK_J) * triton.cdiv(dim, BLOCK_D)
    # Split the batch over programs only as far as the tiles leave the GPU idle; the split
    # count depends on shapes alone, so the sum order (and result) is deterministic.
    n_split = min(batch, max(1, triton.cdiv(TARGET_PROGRAMS, tiles)))
    part = torch.zeros(n_split, dim, width, device=x.device, dtype=torch.float32)  # (S, D, K)
    grid = (triton.cdiv(n_taps, GRAD_BLOCK_J), triton.cdiv(dim, BLOCK_D), n_split)
    with _device_of(x):
        _dkernel_kernel[grid](dout, x, part, batch, dim, length, width, n_split, BLOCK_D=BLOCK_D,
                              BLOCK_J=GRAD_BLOCK_J, BLOCK_T=GRAD_BLOCK_T, num_warps=4)
    return part.sum(0)  # (D, K)


class LongConvTritonFn(torch.autograd.Function):
    """long_conv_direct's contract on Triton kernels; x and kernel may differ in dtype."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or kernel.dim() != 2 or kernel.shape[0] != x.shape[1]:
            raise ValueError(f"want x (B, D, L) and kernel (D, K), got {tuple(x.shape)} "
                             f"and {tuple(kernel.shape)}")
        x, kernel = x.contiguous(), kernel.contiguous()  # the kernels index rows of length L, K
        ctx.save_for_backward(x, kernel)
        out = _conv(x, kernel, reverse=False)  # (B, D, L) fp32
        return out.to(torch.promote_types(x.dtype, torch.float32))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, kernel = ctx.saved_tensors
        dout = dout.contiguous()  # (B, D, L)
        dx = dkernel = None
        if ctx.needs_input_grad[0]:
            dx = _conv(dout, kernel, reverse=True).to(x.dtype)  # (B, D, L)
        if ctx.needs_input_grad[1]:
            dkernel = _dkernel(dout, x, kernel.shape[1]).to(kernel.dtype)  # (D, K)
        return dx, dkernel


def long_conv_triton(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x (B, D, L), kernel (D, K) -> out (B, D, L) in promote_types(x.dtype, float32), with
    gradients for both; needs Triton (see ``triton_available``) and CUDA tensors, or on CPU
    Triton's interpreter (TRITON_INTERPRET=1 set before triton is first imported)."""
    return LongConvTritonFn.apply(x, kernel)
