"""Selective scan (Mamba's S6 recurrence): the mamba_ssm CUDA kernel and exact PyTorch references.

Shapes follow mamba_ssm: u, delta, z (B, D, L); A (D, N); B, C (B, N, L); D (D,).
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  y_t = C_t . h_t + D u_t,  out = y * silu(z)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.errors import UserError
from mqarbench.kernels import KernelChoice, env_choice, use_reference
from mqarbench.kernels.causal_conv import causal_conv1d_fn
from mqarbench.kernels.determinism import VARIABLE as DETERMINISTIC, deterministic_chosen, deterministic_setting
from mqarbench.kernels.selective_scan_triton import selective_scan_triton
from mqarbench.kernels.triton_support import triton_available

try:  # the compiled extension is missing on CPU machines; importing mamba_ssm then raises
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn
except Exception as err:  # noqa: BLE001 - any import failure means "no fast path"
    mamba_inner_fn = selective_scan_fn = None
    _MISSING = f"mamba_ssm not importable ({type(err).__name__}; pip install mamba-ssm)"
else:
    _MISSING = ""

# MQARBENCH_SELECTIVE_SCAN picks the scan on CUDA: mamba_ssm's kernel (the path of every board
# run) or ours in Triton (deterministic; auto takes it under deterministic training, the default).
# mamba_inner_fn holds mamba_ssm's scan, so a model that would take it runs its unfused ops instead.
SCAN_PATHS = ("auto", "mamba_ssm", "triton")

CHUNK = 8  # steps per chunk: work grows with CHUNK, Python overhead with L / CHUNK; 8 was fastest
# on a 2-core CPU for (B 4-16, d_inner 128-256, L 64-256), 2-4x faster than 16 or 32


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """Copies in fp32 (fp64 kept), the discretised delta, and log-decays delta*A (B, D, N, L)."""
    work = torch.promote_types(u.dtype, torch.float32)
    u, delta, A, B, C = (t.to(work) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    log_decay = torch.einsum("bdl,dn->bdnl", delta, A)  # (B, D, N, L), <= 0
    return u, delta, B, C, log_decay


def _finish(y, u, D, z, dtype):
    if D is not None:
        y = y + u * D.to(u.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(u.dtype))
    return y.to(dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence as written: a sequential loop over L (the test oracle; slow)."""
    dtype = u.dtype
    u, delta, B, C, log_decay = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, n_state, length = log_decay.shape
    h = u.new_zeros(batch, dim, n_state)  # (B, D, N)
    ys = []
    for t in range(length):
        drive = (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]  # (B, D, N)
        h = torch.exp(log_decay[..., t]) * h + drive
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return _finish(torch.stack(ys, dim=-1), u, D, z, dtype)


def selective_scan_chunked(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk: int = CHUNK
):
    """The same recurrence, exact, parallel within chunks of ``chunk`` steps.

    Inside a chunk with cumulative log-decay c_t, h_t = exp(c_t) h_0 + sum_{s<=t} exp(c_t - c_s)
    delta_s B_s u_s. Differences c_t - c_s (s <= t) are <= 0, so no exp overflows, unlike the
    exp(c_t) * cumsum(exp(-c_s) ...) shortcut, which overflows for strongly decaying channels.
    """
    dtype = u.dtype
    u, delta, B, C, log_decay = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, n_state, length = log_decay.shape
    h = u.new_zeros(batch, dim, n_state)  # (B, D, N)
    ys = []
    for start in range(0, length, chunk):
        sl = slice(start, min(start + chunk, length))
        cum = log_decay[..., sl].cumsum(-1)  # (B, D, N, T)
        steps = cum.shape[-1]
        causal = torch.ones(steps, steps, dtype=torch.bool, device=u.device).tril()
        gap = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf"))
        drive = (delta[:, :, sl] * u[:, :, sl])[:, :, None, :] * B[:, None, :, sl]  # (B, D, N, T)
        states = torch.einsum("bdnts,bdns->bdnt", gap.exp(), drive)
        states = states + cum.exp() * h[..., None]  # (B, D, N, T)
        ys.append(torch.einsum("bdnt,bnt->bdt", states, C[:, :, sl]))
        h = states[..., -1]
    return _finish(torch.cat(ys, dim=-1), u, D, z, dtype)


def triton_scan_chosen() -> bool:
    """Whether MQARBENCH_SELECTIVE_SCAN asks for our Triton scan, or deterministic training (the
    default) needs it (a bad value, or mamba_ssm's scan with MQARBENCH_DETERMINISTIC=1, raises
    UserError)."""
    chosen = env_choice("MQARBENCH_SELECTIVE_SCAN", SCAN_PATHS)
    if deterministic_chosen():
        if chosen == "mamba_ssm":
            raise UserError(f"MQARBENCH_SELECTIVE_SCAN=mamba_ssm with {DETERMINISTIC}=1: mamba_ssm's scan "
                            "backward is not deterministic; unset MQARBENCH_SELECTIVE_SCAN (or set it to triton)")
        return True
    return chosen == "triton"


def scan_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The selective scan taken on ``device``, as MQARBENCH_SELECTIVE_SCAN says."""
    triton_chosen = triton_scan_chosen()  # a bad value is reported on every device
    why = ""
    if device.type == "cuda" and not use_reference():
        if triton_chosen and triton_available()[0]:
            return selective_scan_triton, KernelChoice("triton.selective_scan_triton", True)
        if not triton_chosen and selective_scan_fn is not None:
            return selective_scan_fn, KernelChoice("mamba_ssm.selective_scan_fn", True)
        why = triton_available()[1] if triton_chosen else _MISSING
    return selective_scan_chunked, KernelChoice("reference.selective_scan_chunked", False, why)


def grouped_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The scan with B, C (batch, G, N, L) shared by G equal groups of channels: one reference scan
    per group (mamba_ssm's kernel takes the groups in one call)."""
    groups = B.shape[1]
    per = u.shape[1] // groups
    part = lambda t, g: None if t is None else t[..., g * per:(g + 1) * per, :]  # noqa: E731 - (B, D/G, L)
    vec = lambda t, g: None if t is None else t[g * per:(g + 1) * per]  # noqa: E731 - (D/G, ...)
    return torch.cat([selective_scan_chunked(part(u, g), part(delta, g), vec(A, g), B[:, g], C[:, g],
                                             vec(D, g), part(z, g), vec(delta_bias, g), delta_softplus)
                      for g in range(groups)], dim=1)


def grouped_scan_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The grouped selective scan (stacked members, ``mqarbench/models/stacked.py``) on ``device``."""
    # our Triton scan takes no channel groups; `mqarbench run --stack` trains without determinism
    if device.type == "cuda" and deterministic_setting() == "1":
        raise UserError(f"{DETERMINISTIC}=1 with stacked runs (--stack): their grouped scan is mamba_ssm's, "
                        "whose backward is not deterministic; drop --stack, or set it to 0")
    if device.type == "cuda" and not use_reference() and selective_scan_fn is not None:
        return selective_scan_fn, KernelChoice("mamba_ssm.selective_scan_fn", True)
    why = _MISSING if device.type == "cuda" and selective_scan_fn is None else ""
    return grouped_scan_ref, KernelChoice("reference.grouped_scan_ref", False, why)


def inner_impl(device: torch.device) -> tuple[Callable | None, KernelChoice]:
    """The fused Mamba block kernel (conv + projections + scan + gate) on ``device``, if any.
    It runs causal_conv1d's kernel inside, so it needs both libraries; it holds mamba_ssm's scan,
    so our Triton scan (deterministic training, or MQARBENCH_SELECTIVE_SCAN=triton) leaves it out."""
    ready = mamba_inner_fn is not None and causal_conv1d_fn is not None
    triton_chosen = triton_scan_chosen()
    if device.type == "cuda" and not use_reference() and ready and not triton_chosen:
        return mamba_inner_fn, KernelChoice("mamba_ssm.mamba_inner_fn", True)
    why = ""
    if device.type == "cuda" and not ready:
        why = _MISSING or "causal_conv1d not importable (pip install causal-conv1d)"
    return None, KernelChoice("reference.unfused", False, why)
