"""The (gated) delta rule of DeltaNet and Gated DeltaNet: flash-linear-attention's chunked Triton
kernels on CUDA, the step-by-step recurrence elsewhere (a step loop is exact and, at the
benchmark's lengths, fast enough on a CPU).

Per head, k unit-norm, beta in (0, 1), alpha = exp(g) the gate (1 for DeltaNet):
    S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t k_t^T v_t   (K x V, written in rows)
    o_t = scale * q_t S_t
i.e. the state first forgets, then moves its prediction for k_t a fraction beta_t toward v_t.
Shapes: q, k (B, T, H, K); v (B, T, H, V); beta, g (B, T, H) -> o (B, T, H, V).
"""

from __future__ import annotations

from typing import Callable

import torch

from mqarbench.kernels import KernelChoice, at_least_fp32
from mqarbench.kernels.fla_ops import choose, fla_op

DeltaFn = Callable[..., torch.Tensor]

# Why the gated kernel is not taken on Hopper GPUs with Triton >= 3.4, < 3.7.1 (see _gated_ready)
FLA_GATED_REFUSED = ("flash-linear-attention refuses the gated delta rule's backward on Hopper GPUs "
                     "with Triton >= 3.4, < 3.7.1 (fla #640): pip install 'triton>=3.7.1' or tilelang")


def delta_step(state: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               beta: torch.Tensor, g: torch.Tensor | None,
               scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One position: state (B, H, K, V); q, k (B, H, K); v (B, H, V); beta, g (B, H)."""
    if g is not None:
        state = state * g.exp()[..., None, None]
    predicted = torch.einsum("bhk,bhkv->bhv", k, state)  # what the state recalls for k_t
    state = state + k[..., None] * (beta[..., None] * (v - predicted))[..., None, :]
    return scale * torch.einsum("bhk,bhkv->bhv", q, state), state


def delta_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                    g: torch.Tensor | None, scale: float) -> torch.Tensor:
    """One step at a time in fp32 or wider; g None is DeltaNet (no forgetting)."""
    q, k, v, beta = at_least_fp32(q, k, v, beta)
    g = None if g is None else at_least_fp32(g)[0]
    batch, length, heads, width = q.shape
    state = q.new_zeros(batch, heads, width, v.shape[-1])  # (B, H, K, V)
    outputs = []
    for t in range(length):
        o, state = delta_step(state, q[:, t], k[:, t], v[:, t], beta[:, t],
                              None if g is None else g[:, t], scale)
        outputs.append(o)
    return torch.stack(outputs, dim=1)  # (B, T, H, V)


def _delta_fla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
               g: torch.Tensor | None, scale: float) -> torch.Tensor:
    k, v, beta = k.to(q.dtype), v.to(q.dtype), beta.to(q.dtype)  # the kernels take one dtype
    if g is None:
        chunk_delta_rule, _ = fla_op("fla.ops.delta_rule", "chunk_delta_rule")
        # fla's chunk_delta_rule asserts 16-bit inputs; the models' normalised q and k arrive in
        # fp32 even under autocast, so they are computed in bf16 (as autocast does for a matmul)
        dtype = torch.bfloat16 if q.dtype == torch.float32 else q.dtype
        out, _ = chunk_delta_rule(*(t.to(dtype) for t in (q, k, v, beta)), scale=scale)
        return out.to(q.dtype)  # (B, T, H, V)
    chunk_gated, _ = fla_op("fla.ops.gated_delta_rule", "chunk_gated_delta_rule")
    out, _ = chunk_gated(q, k, v, g.float(), beta, scale=scale)
    return out  # (B, T, H, V)


def _gated_ready() -> tuple[DeltaFn | None, str]:
    """fla's gated kernel, unless fla itself refuses its backward here: on Hopper GPUs with
    Triton >= 3.4 and < 3.7.1 (without tilelang) ``chunk_bwd_dqkwg`` raises at the first backward,
    because that Triton miscompiles it (fla issue #640). Asked before training, not mid-run."""
    kernel, missing = fla_op("fla.ops.gated_delta_rule", "chunk_gated_delta_rule")
    if kernel is None:
        return None, missing
    import importlib.util

    import fla.utils as fla_utils

    refused = (fla_utils.IS_NVIDIA_HOPPER and fla_utils.TRITON_ABOVE_3_4_0
               and not fla_utils.TRITON_ABOVE_3_7_1 and importlib.util.find_spec("tilelang") is None)
    return (None, FLA_GATED_REFUSED) if refused else (kernel, "")


def delta_impl(device: torch.device, gated: bool) -> tuple[DeltaFn, KernelChoice]:
    """fla's ``chunk_delta_rule`` / ``chunk_gated_delta_rule`` on CUDA when importable, usable and
    not forced off; the step recurrence otherwise."""
    if gated:
        return choose(device, ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"), _delta_fla,
                      delta_recurrent, ready=_gated_ready)
    return choose(device, ("fla.ops.delta_rule", "chunk_delta_rule"), _delta_fla, delta_recurrent)
