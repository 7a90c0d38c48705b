"""Residual add + RMSNorm of pre-norm blocks: Triton kernels by tiles of rows, mamba_ssm's or PyTorch.

    residual = hidden + residual (kept in fp32);  normed = RMSNorm(residual)

``MQARBENCH_RMS_NORM`` picks the CUDA path: ``auto`` (unset) and ``triton`` take
``add_rms_norm_triton`` (the rows of a tile in parallel; mamba_ssm's backward walks them one by
one, a tenth of a graphed ``small`` mamba step), ``mamba_ssm`` takes mamba_ssm's ``rms_norm_fn``
(the path of the board's runs trained before 2026-11-26).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, env_choice, use_reference
from mqarbench.kernels.add_rms_norm_triton import add_rms_norm_triton
from mqarbench.kernels.triton_support import triton_available

try:
    from mamba_ssm.ops.triton.layer_norm import rms_norm_fn
except Exception as err:  # noqa: BLE001 - importing mamba_ssm fails outright without its build
    rms_norm_fn = None
    _MISSING = f"mamba_ssm not importable ({type(err).__name__}; pip install mamba-ssm)"
else:
    _MISSING = ""


def add_rms_norm_ref(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed, residual): the residual stream in fp32, normed in the weight's dtype."""
    residual = hidden.float() if residual is None else residual + hidden.float()
    normed = F.rms_norm(residual.to(weight.dtype), weight.shape, weight, eps)
    return normed, residual


def _add_rms_norm_fused(hidden, residual, weight, eps):
    return rms_norm_fn(hidden, weight, None, residual=residual, eps=eps, prenorm=True,
                       residual_in_fp32=True)


RMS_NORM_PATHS = ("auto", "triton", "mamba_ssm")  # MQARBENCH_RMS_NORM's values


def add_norm_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The add + RMSNorm taken on ``device``, as MQARBENCH_RMS_NORM says (see the module)."""
    chosen = env_choice("MQARBENCH_RMS_NORM", RMS_NORM_PATHS)
    if device.type == "cuda" and not use_reference():
        if chosen != "mamba_ssm" and triton_available()[0]:
            return add_rms_norm_triton, KernelChoice("triton.add_rms_norm_triton", True)
        if chosen == "mamba_ssm" and rms_norm_fn is not None:
            return _add_rms_norm_fused, KernelChoice("mamba_ssm.rms_norm_fn", True)
    missing = _MISSING if chosen == "mamba_ssm" else triton_available()[1]
    why = missing if device.type == "cuda" and not use_reference() else ""
    return add_rms_norm_ref, KernelChoice("reference.add_rms_norm_ref", False, why)
