"""The RWKV-7 (Goose) state update, a diagonal-plus-low-rank generalised delta rule:
flash-linear-attention's ``chunk_rwkv7`` on CUDA, the step-by-step recurrence elsewhere.

Per head, w the log decay per key channel (in [LOG_DECAY_MIN, 0)), a = -kk, b = kk * iclr:
    S_t = diag(exp(w_t)) S_{t-1} + b_t (a_t^T S_{t-1}) + k_t^T v_t   (K x V)     o_t = r_t S_t
(RWKV-7's S (diag(w) - kk^T (iclr * kk)) + v^T k, written with the state transposed.)
Shapes: r, w, k, a, b (B, T, H, K); v (B, T, H, V) -> o (B, T, H, V). No 1/sqrt(K) scale.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.kernels.fla_ops import choose, fla_op

Rwkv7Fn = Callable[..., torch.Tensor]
LOG_DECAY_MIN = -math.exp(-0.5)  # RWKV-7 keeps exp(w) in [exp(-e^-0.5), 1) = [0.545, 1)


def rwkv7_step(state: torch.Tensor, r: torch.Tensor, w: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor, a: torch.Tensor,
               b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One position: state (B, H, K, V); r, w, k, a, b (B, H, K); v (B, H, V)."""
    removed = torch.einsum("bhk,bhkv->bhv", a, state)  # a^T S_{t-1}
    state = (state * w.exp()[..., None] + b[..., None] * removed[..., None, :]
             + k[..., None] * v[..., None, :])
    return torch.einsum("bhk,bhkv->bhv", r, state), state


def rwkv7_recurrent(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One step at a time in fp32 or wider: exact; the CPU path and the test reference."""
    r, w, k, v, a, b = at_least_fp32(r, w, k, v, a, b)
    batch, length, heads, width = r.shape
    state = r.new_zeros(batch, heads, width, v.shape[-1])  # (B, H, K, V)
    outputs = []
    for t in range(length):
        o, state = rwkv7_step(state, r[:, t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t])
        outputs.append(o)
    return torch.stack(outputs, dim=1)  # (B, T, H, V)


def _rwkv7_fla(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    chunk_rwkv7, _ = fla_op("fla.ops.rwkv7", "chunk_rwkv7")
    k, v, a, b = (t.to(r.dtype) for t in (k, v, a, b))
    # safe_gate with the bound: fla's tensor-core scheme for decays known to stay in range
    out, _ = chunk_rwkv7(r, w.float(), k, v, a, b, scale=1.0, safe_gate=True,
                         lower_bound=LOG_DECAY_MIN, chunk_size=64)
    return out  # (B, T, H, V)


def rwkv7_impl(device: torch.device) -> tuple[Rwkv7Fn, KernelChoice]:
    """fla's ``chunk_rwkv7`` on CUDA when importable and not forced off; the step recurrence otherwise."""
    return choose(device, ("fla.ops.rwkv7", "chunk_rwkv7"), _rwkv7_fla, rwkv7_recurrent)
