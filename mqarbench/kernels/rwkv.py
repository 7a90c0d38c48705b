"""The RWKV-6 (Finch) WKV recurrence: flash-linear-attention's chunked Triton kernel on CUDA,
an exact chunked PyTorch form elsewhere, and the step-by-step recurrence as the ground truth.

Per head, with r, k, w of width K and v of width V (w = log decay <= 0, u the "bonus"):
    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)          S_t = diag(exp(w_t)) S_{t-1} + k_t^T v_t
Shapes: r, k, w (B, T, H, K); v (B, T, H, V); u (H, K) -> o (B, T, H, V). No 1/sqrt(K) scale.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, at_least_fp32, use_reference

WkvFn = Callable[..., torch.Tensor]
CHUNK = 16


def wkv6_recurrent(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                   u: torch.Tensor) -> torch.Tensor:
    """One step at a time in fp32 or wider: slow, obviously right; the test reference."""
    batch, length, heads, width = r.shape
    r, k, v, w, u = at_least_fp32(r, k, v, w, u)
    state = r.new_zeros(batch, heads, width, v.shape[-1])  # (B, H, K, V)
    outputs = []
    for t in range(length):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]  # (B, H, K, V)
        outputs.append(torch.einsum("bhk,bhkv->bhv", r[:, t], state + u[..., None] * kv))
        state = state * w[:, t, :, :, None].exp() + kv
    return torch.stack(outputs, dim=1)  # (B, T, H, V)


def wkv6_chunked(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
                 u: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """The same recurrence, a chunk of positions at a time, in fp32 or wider.

    Position i of a chunk sees position j < i through exp(sum_{j<m<i} w_m) <= 1 per key channel.
    Each such segment sum is accumulated from its own terms (never as a difference of two
    prefix sums, which cancels catastrophically under strong decay) and every exponent is
    <= 0, so nothing overflows.
    """
    batch, length, heads, width = r.shape
    pad = (-length) % chunk
    r, k, v, w, u = at_least_fp32(r, k, v, w, u)
    if pad:  # zero keys/values and zero decay leave the state and earlier outputs unchanged
        r, k, v, w = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (r, k, v, w))
    n_chunks = r.shape[1] // chunk
    r, k, v, w = (t.reshape(batch, n_chunks, chunk, heads, -1).transpose(2, 3)
                  for t in (r, k, v, w))  # (B, N, H, C, K|V)
    # segment[i, j] = sum_{j<m<i} w_m: a masked cumulative sum over i   (B, N, H, C_i, C_j, K)
    after_j = torch.ones(chunk, chunk, dtype=torch.bool, device=r.device).tril(-1)  # m > j
    terms = w[..., :, None, :].expand(*w.shape[:-2], chunk, chunk, width) * after_j[..., None]
    segment = F.pad(terms.cumsum(dim=-3), (0, 0, 0, 0, 1, -1))  # shift i: sum up to i-1
    strictly_past = segment.masked_fill(~after_j[..., None], float("-inf"))
    scores = torch.einsum("bnhik,bnhjk,bnhijk->bnhij", r, k, strictly_past.exp())  # (B, N, H, C, C)
    bonus = (r * u[:, None, :] * k).sum(-1, keepdim=True)  # (B, N, H, C, 1)
    local = scores @ v + bonus * v  # (B, N, H, C, V)
    since_start = F.pad(w.cumsum(dim=-2), (0, 0, 1, -1))  # sum_{m<i} w_m         (B, N, H, C, K)
    to_end = F.pad(w.flip(-2).cumsum(dim=-2), (0, 0, 1, -1)).flip(-2)  # sum_{m>j} w_m
    chunk_decay = w.sum(dim=-2)  # (B, N, H, K)
    state = r.new_zeros(batch, heads, width, v.shape[-1])  # (B, H, K, V)
    outputs = []
    for n in range(n_chunks):
        from_state = (r[:, n] * since_start[:, n].exp()) @ state  # (B, H, C, V)
        outputs.append(local[:, n] + from_state)
        state = (state * chunk_decay[:, n, :, :, None].exp()
                 + (k[:, n] * to_end[:, n].exp()).transpose(-1, -2) @ v[:, n])
    out = torch.stack(outputs, dim=1).transpose(2, 3).reshape(batch, n_chunks * chunk, heads, -1)
    return out[:, :length]  # (B, T, H, V)


@functools.lru_cache(maxsize=1)
def _fla_chunk_rwkv6() -> tuple[WkvFn | None, str]:
    """Import lazily: fla pulls in Triton, which costs seconds and needs CUDA to be useful."""
    try:
        from fla.ops.rwkv6 import chunk_rwkv6
    except Exception as err:  # ImportError, or Triton failing to initialise
        return None, (f"flash-linear-attention not importable ({type(err).__name__}; "
                      "pip install flash-linear-attention)")
    return chunk_rwkv6, ""


def _wkv6_fla(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
              u: torch.Tensor) -> torch.Tensor:
    chunk_rwkv6, _ = _fla_chunk_rwkv6()
    out, _ = chunk_rwkv6(r, k, v, w, u, scale=1.0)  # inputs in [B, T, H, K] layout
    return out  # (B, T, H, V)


def wkv6_impl(device: torch.device) -> tuple[WkvFn, KernelChoice]:
    """fla's ``chunk_rwkv6`` on CUDA when importable and not forced off; the chunked reference otherwise."""
    if use_reference() or device.type != "cuda":
        return wkv6_chunked, KernelChoice("reference.wkv6_chunked", False)
    kernel, missing = _fla_chunk_rwkv6()
    if kernel is None:
        return wkv6_chunked, KernelChoice("reference.wkv6_chunked", False, missing)
    return _wkv6_fla, KernelChoice("fla.ops.rwkv6.chunk_rwkv6", True)
