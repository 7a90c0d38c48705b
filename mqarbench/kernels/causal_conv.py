"""Short depthwise causal convolution: causal_conv1d's CUDA kernel and a PyTorch reference.

x (B, D, L), weight (D, K), bias (D,): out_t = act(bias + sum_j weight[:, j] * x_{t-K+1+j}).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference

try:
    from causal_conv1d import causal_conv1d_fn
except Exception as err:  # noqa: BLE001 - a missing or broken build both mean "no fast path"
    causal_conv1d_fn = None
    _MISSING = f"causal_conv1d not importable ({type(err).__name__}; pip install causal-conv1d)"
else:
    _MISSING = ""


def causal_conv1d_ref(x, weight, bias=None, activation: str | None = None):
    """F.conv1d with K-1 zeros of left padding, so position t sees only positions <= t."""
    dim, width = weight.shape
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight[:, None, :], bias, groups=dim)  # (B, D, L)
    return F.silu(out) if activation in ("silu", "swish") else out


def conv_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The short causal conv taken on ``device``."""
    if device.type == "cuda" and not use_reference() and causal_conv1d_fn is not None:
        return causal_conv1d_fn, KernelChoice("causal_conv1d.causal_conv1d_fn", True)
    why = _MISSING if device.type == "cuda" and causal_conv1d_fn is None else ""
    return causal_conv1d_ref, KernelChoice("reference.causal_conv1d_ref", False, why)
