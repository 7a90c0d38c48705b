"""Mamba-2's SSD scan: mamba_ssm's chunked Triton kernel on CUDA, an exact chunked PyTorch form
elsewhere, and the step-by-step recurrence as the ground truth.

Per head h with scalar decay, x_t (P,), B_t, C_t (N,) shared by the heads of a group:
    dt_t = softplus(dt_raw_t + dt_bias)      h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T  (P x N)
    y_t = h_t C_t + D x_t
Shapes: x (B, T, H, P); dt_raw (B, T, H); A, D, dt_bias (H,); B, C (B, T, G, N) -> y (B, T, H, P).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.kernels.fla_ops import choose

CHUNK = 64  # the reference's chunk; mamba_ssm's kernel takes its own (Mamba2's default, 256)
KERNEL_CHUNK = 256
SsdFn = Callable[..., torch.Tensor]


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, ..., G, N) -> (B, ..., H, N): each group's B or C serves H // G consecutive heads."""
    return t.repeat_interleave(heads // t.shape[-2], dim=-2)


def ssd_step(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor,
             b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One position: state (B, H, P, N), x (B, H, P), dt (B, H) after softplus, b, c (B, G, N)."""
    b, c = _heads(b, x.shape[1]), _heads(c, x.shape[1])  # (B, H, N)
    state = (state * torch.exp(dt * a)[..., None, None]
             + (dt[..., None] * x)[..., :, None] * b[..., None, :])
    return torch.einsum("bhpn,bhn->bhp", state, c) + d[:, None] * x, state


def _softplus_dt(dt_raw: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    return F.softplus(dt_raw + dt_bias)


def ssd_recurrent(x: torch.Tensor, dt_raw: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                  c: torch.Tensor, d: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    """One step at a time in fp32 or wider: slow, obviously right; the test reference."""
    x, dt_raw, a, b, c, d, dt_bias = at_least_fp32(x, dt_raw, a, b, c, d, dt_bias)
    dt = _softplus_dt(dt_raw, dt_bias)
    batch, length, heads, width = x.shape
    state = x.new_zeros(batch, heads, width, b.shape[-1])  # (B, H, P, N)
    outputs = []
    for t in range(length):
        y, state = ssd_step(state, x[:, t], dt[:, t], a, b[:, t], c[:, t], d)
        outputs.append(y)
    return torch.stack(outputs, dim=1)  # (B, T, H, P)


def segment_sums(log_decay: torch.Tensor) -> torch.Tensor:
    """(..., C) -> (..., C_i, C_j): sum_{j<m<=i} log_decay_m, -inf above the diagonal.

    Each sum is accumulated from its own terms, never as a difference of two prefix sums
    (which cancels catastrophically under strong decay)."""
    chunk = log_decay.shape[-1]
    after_j = torch.ones(chunk, chunk, dtype=torch.bool, device=log_decay.device).tril(-1)
    terms = log_decay[..., :, None].expand(*log_decay.shape, chunk).masked_fill(~after_j, 0)
    sums = terms.cumsum(dim=-2)  # row i: sum over m <= i of terms with m > j
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=log_decay.device).tril()
    return sums.masked_fill(~causal, float("-inf"))


def ssd_chunked(x: torch.Tensor, dt_raw: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                c: torch.Tensor, d: torch.Tensor, dt_bias: torch.Tensor,
                chunk: int = CHUNK) -> torch.Tensor:
    """The same scan, a chunk at a time: within a chunk the quadratic (attention-like) form
    y_i = sum_{j<=i} (C_i . B_j) exp(sum_{j<m<=i} dt_m A) dt_j x_j, across chunks the state."""
    x, dt_raw, a, b, c, d, dt_bias = at_least_fp32(x, dt_raw, a, b, c, d, dt_bias)
    batch, length, heads, width = x.shape
    dt = _softplus_dt(dt_raw, dt_bias)  # (B, T, H)
    b, c = _heads(b, heads), _heads(c, heads)  # (B, T, H, N)
    pad = (-length) % chunk
    if pad:  # zero inputs and dt = 0 (no decay, no input) leave state and outputs unchanged
        x, b, c = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, b, c))
        dt = F.pad(dt, (0, 0, 0, pad))
    n = x.shape[1] // chunk
    x, b, c = (t.reshape(batch, n, chunk, heads, -1).transpose(2, 3) for t in (x, b, c))
    dt = dt.reshape(batch, n, chunk, heads).transpose(2, 3)  # (B, N, H, C)
    log_decay = dt * a[:, None]  # (B, N, H, C), <= 0
    xdt = x * dt[..., None]  # (B, N, H, C, P)
    local = ((c @ b.transpose(-1, -2)) * segment_sums(log_decay).exp()) @ xdt  # (B, N, H, C, P)
    since_start = log_decay.cumsum(-1)  # sum_{m<=i}: decay from the chunk's start state to i
    to_end = F.pad(log_decay.flip(-1).cumsum(-1), (1, -1)).flip(-1)  # sum_{m>j} to the end
    state = x.new_zeros(batch, heads, width, b.shape[-1])  # (B, H, P, N)
    outputs = []
    for i in range(n):
        from_state = (c[:, i] @ state.transpose(-1, -2)) * since_start[:, i, ..., None].exp()
        outputs.append(local[:, i] + from_state)  # (B, H, C, P)
        state = (state * since_start[:, i, :, -1, None, None].exp()
                 + (xdt[:, i] * to_end[:, i, ..., None].exp()).transpose(-1, -2) @ b[:, i])
    y = torch.stack(outputs, dim=1).transpose(2, 3).reshape(batch, n * chunk, heads, width)
    return y[:, :length] + d[:, None] * x.transpose(2, 3).reshape(batch, -1, heads, width)[:, :length]


@functools.lru_cache(maxsize=1)
def _mamba_chunk_scan() -> tuple[SsdFn | None, str]:
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as err:  # noqa: BLE001 - a missing or broken build both mean "no fast path"
        return None, f"mamba_ssm not importable ({type(err).__name__}; pip install mamba-ssm)"
    return mamba_chunk_scan_combined, ""


def _ssd_mamba_ssm(x: torch.Tensor, dt_raw: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                   c: torch.Tensor, d: torch.Tensor, dt_bias: torch.Tensor) -> torch.Tensor:
    scan, _ = _mamba_chunk_scan()
    return scan(x, dt_raw, a, b, c, KERNEL_CHUNK, D=d, dt_bias=dt_bias, dt_softplus=True)


def ssd_impl(device: torch.device) -> tuple[SsdFn, KernelChoice]:
    """mamba_ssm's ``mamba_chunk_scan_combined`` on CUDA when importable; the chunked reference otherwise."""
    return choose(device, ("mamba_ssm", "mamba_chunk_scan_combined"), _ssd_mamba_ssm, ssd_chunked,
                  ready=_mamba_chunk_scan)
