"""Gated linear attention (GLA): flash-linear-attention's ``chunk_gla`` on CUDA, the RWKV-6
chunked form elsewhere, and the step-by-step recurrence as the ground truth.

Per head, g the log forget gate per key channel (<= 0), the state includes the current token:
    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t        o_t = scale * q_t S_t
Shapes: q, k, g (B, T, H, K); v (B, T, H, V) -> o (B, T, H, V).
"""

from __future__ import annotations

from typing import Callable

import torch

from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.kernels.fla_ops import choose, fla_op
from mqarbench.kernels.rwkv import wkv6_chunked

GlaFn = Callable[..., torch.Tensor]


def gla_step(state: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             g: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One position: state (B, H, K, V); q, k, g (B, H, K); v (B, H, V)."""
    state = state * g.exp()[..., None] + k[..., None] * v[..., None, :]
    return scale * torch.einsum("bhk,bhkv->bhv", q, state), state


def gla_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                  scale: float) -> torch.Tensor:
    """One step at a time in fp32 or wider: slow, obviously right; the test reference."""
    q, k, v, g = at_least_fp32(q, k, v, g)
    batch, length, heads, width = q.shape
    state = q.new_zeros(batch, heads, width, v.shape[-1])
    outputs = []
    for t in range(length):
        o, state = gla_step(state, q[:, t], k[:, t], v[:, t], g[:, t], scale)
        outputs.append(o)
    return torch.stack(outputs, dim=1)  # (B, T, H, V)


def gla_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                scale: float) -> torch.Tensor:
    """GLA is RWKV-6's WKV with r = q exp(g), w = g and no bonus, plus the current token's
    own term (q . k) v: q_t S_t = (q_t exp(g_t)) S'_{t-1} + (q_t . k_t) v_t, where S' is
    RWKV-6's state (it excludes token t). exp(g) <= 1, so nothing overflows."""
    q, k, v, g = at_least_fp32(q, k, v, g)
    q = q * scale
    no_bonus = q.new_zeros(q.shape[2], q.shape[3])  # (H, K)
    past = wkv6_chunked(q * g.exp(), k, v, g, no_bonus)
    return past + (q * k).sum(-1, keepdim=True) * v  # (B, T, H, V)


def _gla_fla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
             scale: float) -> torch.Tensor:
    chunk_gla, _ = fla_op("fla.ops.gla", "chunk_gla")
    out, _ = chunk_gla(q, k, v, g.float(), scale=scale)
    return out  # (B, T, H, V)


def gla_impl(device: torch.device) -> tuple[GlaFn, KernelChoice]:
    """fla's ``chunk_gla`` on CUDA when importable and not forced off; the chunked reference otherwise."""
    return choose(device, ("fla.ops.gla", "chunk_gla"), _gla_fla, gla_chunked)
