"""The (gated) delta rule of DeltaNet and Gated DeltaNet: flash-linear-attention's chunked Triton
kernels on CUDA, its chunkwise form in PyTorch on CUDA where fla is missing or refuses the kernel,
and the step-by-step recurrence elsewhere (a step loop is exact and, at the benchmark's lengths,
fast enough on a CPU).

Per head, k unit-norm, beta in (0, 1), alpha = exp(g) the gate (1 for DeltaNet):
    S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t k_t^T v_t   (K x V, written in rows)
    o_t = scale * q_t S_t
i.e. the state first forgets, then moves its prediction for k_t a fraction beta_t toward v_t.
Shapes: q, k (B, T, H, K); v (B, T, H, V); beta, g (B, T, H) -> o (B, T, H, V).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

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
    # one dtype for all (the widest given, fp32 at least): a wider g would widen the state mid-loop
    gates = [] if g is None else [g]
    q, k, v, beta, *gates = at_least_fp32(q, k, v, beta, *gates)
    g = gates[0] if gates else None
    batch, length, heads, width = q.shape
    state = q.new_zeros(batch, heads, width, v.shape[-1])  # (B, H, K, V)
    outputs = []
    for t in range(length):
        o, state = delta_step(state, q[:, t], k[:, t], v[:, t], beta[:, t],
                              None if g is None else g[:, t], scale)
        outputs.append(o)
    return torch.stack(outputs, dim=1)  # (B, T, H, V)


def delta_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                  g: torch.Tensor | None, scale: float, chunk: int = 64) -> torch.Tensor:
    """``delta_recurrent`` chunk by chunk (exact up to rounding; sequential over chunks only).
    In a chunk of C positions entered with state S0, G = cumsum(g) within the chunk, gamma = exp(G):
        A_ij = beta_i exp(G_i - G_j) (k_i . k_j) for j < i, else 0          (C x C)
        U = (I + A)^-1 (beta V - (beta gamma) K S0)                          (C x V)
        o_i = scale (gamma_i q_i S0 + sum_{j<=i} exp(G_i - G_j) (q_i . k_j) u_j)
        S_C = gamma_C S0 + sum_j exp(G_C - G_j) k_j^T u_j
    (I + A)^-1 does not depend on S0, so it is applied to beta V and (beta gamma) K for all
    chunks at once. T is zero-padded to a multiple of C (beta = 0, g = 0: later positions only)."""
    gates = [] if g is None else [g]
    q, k, v, beta, *gates = at_least_fp32(q, k, v, beta, *gates)
    batch, length, heads, k_dim = q.shape
    v_dim = v.shape[-1]
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length

    def chunks(x: torch.Tensor) -> torch.Tensor:  # (B, T, H, ...) -> (B, H, N, C, ...)
        x = F.pad(x.movedim(2, 1), (0, 0) * (x.dim() - 3) + (0, pad))
        return x.reshape(batch, heads, n_chunks, chunk, *x.shape[3:])

    # not in autocast's bf16: the state carries its rounding from chunk to chunk
    with torch.autocast(q.device.type, enabled=False):
        q, k, v, beta = chunks(q), chunks(k), chunks(v), chunks(beta)  # (B, H, N, C, K|V), beta (B, H, N, C)
        cum = chunks(gates[0]).cumsum(-1) if gates else torch.zeros_like(beta)  # G (B, H, N, C)
        causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()  # j <= i
        # exp(G_i - G_j) for j <= i, 0 above: masked before exp, where G_i - G_j > 0 could overflow
        decay = torch.where(causal, cum[..., :, None] - cum[..., None, :], -torch.inf).exp()  # (B, H, N, C, C)
        a = (beta[..., None] * decay * (k @ k.transpose(-1, -2))).tril(-1)  # (B, H, N, C, C)
        rhs = torch.cat([beta[..., None] * v, (beta * cum.exp())[..., None] * k], dim=-1)  # (B, H, N, C, V+K)
        # unitriangular: the solve reads A below the diagonal and takes ones on it
        w_v, w_k = torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True).split([v_dim, k_dim], -1)
        chunk_decay = cum[..., -1].exp()  # gamma_C (B, H, N)
        k_to_end = k * (cum[..., -1:] - cum).exp()[..., None]  # exp(G_C - G_j) k_j (B, H, N, C, K)
        state = q.new_zeros(batch, heads, k_dim, v_dim)  # (B, H, K, V)
        starts, updates = [], []
        for c in range(n_chunks):
            u = w_v[:, :, c] - w_k[:, :, c] @ state  # (B, H, C, V)
            starts.append(state)
            updates.append(u)
            state = chunk_decay[:, :, c, None, None] * state + k_to_end[:, :, c].transpose(-1, -2) @ u
        s0, u = torch.stack(starts, 2), torch.stack(updates, 2)  # (B, H, N, K, V), (B, H, N, C, V)
        o = (q * cum.exp()[..., None]) @ s0 + (decay * (q @ k.transpose(-1, -2))) @ u  # (B, H, N, C, V)
        return scale * o.reshape(batch, heads, -1, v_dim)[:, :, :length].movedim(1, 2)  # (B, T, H, V)


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
    not forced off; ``delta_chunked`` on CUDA otherwise (a fast path; the choice keeps why fla was
    not taken); the step recurrence on other devices or when forced."""
    if gated:
        return choose(device, ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"), _delta_fla,
                      delta_recurrent, ready=_gated_ready, fallback=delta_chunked)
    return choose(device, ("fla.ops.delta_rule", "chunk_delta_rule"), _delta_fla, delta_recurrent,
                  fallback=delta_chunked)
