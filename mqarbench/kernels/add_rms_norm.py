"""Residual add + RMSNorm of pre-norm blocks: mamba_ssm's fused Triton kernel or PyTorch.

    residual = hidden + residual (kept in fp32);  normed = RMSNorm(residual)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference

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


def add_norm_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The add + RMSNorm taken on ``device``."""
    if device.type == "cuda" and not use_reference() and rms_norm_fn is not None:
        return _add_rms_norm_fused, KernelChoice("mamba_ssm.rms_norm_fn", True)
    why = _MISSING if device.type == "cuda" and rms_norm_fn is None else ""
    return add_rms_norm_ref, KernelChoice("reference.add_rms_norm_ref", False, why)
