"""Short depthwise causal convolution: causal_conv1d's CUDA kernel and a PyTorch reference.

x (B, D, L), weight (D, K), bias (D,): out_t = act(bias + sum_j weight[:, j] * x_{t-K+1+j}).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference
from mqarbench.kernels.determinism import deterministic_chosen
from mqarbench.kernels.triton_support import triton

if triton is not None:
    from mqarbench.kernels.causal_conv_triton import conv_backward_triton
else:
    conv_backward_triton = None

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


def conv_backward_torch(x, weight, bias, dout, silu: bool, conv: Callable):
    """The fixed-order backward in torch ops (the reference for the Triton kernel, and the path
    without Triton): (dx, dweight, dbias) for dout (B, D, L)."""
    width, length = weight.shape[1], x.shape[-1]
    work = torch.promote_types(dout.dtype, torch.float32)
    dpre = dout.to(work)
    if silu:  # recomputed, not stored: one more conv instead of a (B, D, L) activation;
        # from an fp32 x, so the conv's output is not rounded to x's dtype before silu's slope
        pre = conv(x.to(work), weight, bias, activation=None)
        gate = torch.sigmoid(pre)
        dpre = dpre * gate * (1 + pre * (1 - gate))  # d silu / d pre
    # x's gradient is the same causal conv run backwards in time
    dx = conv(dpre.flip(-1), weight, None, activation=None).flip(-1).to(x.dtype)
    padded = F.pad(x.to(work), (width - 1, 0))  # (B, D, L + W - 1)
    dweight = torch.stack([(dpre * padded[..., j:j + length]).sum((0, 2)) for j in range(width)], -1)
    dbias = dpre.sum((0, 2)).to(bias.dtype) if bias is not None else None
    return dx, dweight.to(weight.dtype), dbias


def _conv_backward_kernel(x, weight, bias, dout, silu: bool, conv: Callable):
    """The Triton kernel on CUDA tensors (one pass, no (B, D, L) fp32 temporaries), else torch's."""
    if dout.is_cuda and conv_backward_triton is not None:
        return conv_backward_triton(x, weight, bias, dout, silu)
    return conv_backward_torch(x, weight, bias, dout, silu, conv)


class _FixedOrderConv(torch.autograd.Function):
    """``conv``'s forward; a backward whose weight and bias gradients are summed in a fixed order
    instead of causal_conv1d's atomic adds, so reruns repeat bit for bit."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu: bool, conv: Callable, backward: Callable):
        ctx.save_for_backward(x, weight, bias)
        ctx.silu, ctx.conv, ctx.backward_fn = silu, conv, backward
        return conv(x, weight, bias, activation="silu" if silu else None)

    @staticmethod
    def backward(ctx, dout):  # dout (B, D, L)
        x, weight, bias = ctx.saved_tensors
        dx, dweight, dbias = ctx.backward_fn(x, weight, bias, dout, ctx.silu, ctx.conv)
        return dx, dweight, dbias, None, None, None


def fixed_order_conv(conv: Callable, backward: Callable = conv_backward_torch) -> Callable:
    """``conv`` (causal_conv1d_fn's signature) with a fixed-order ``backward`` (conv_backward_torch's
    signature)."""

    def run(x, weight, bias=None, activation: str | None = None):
        return _FixedOrderConv.apply(x, weight, bias, activation in ("silu", "swish"), conv, backward)

    return run


_FIXED_ORDER_FAST = (fixed_order_conv(causal_conv1d_fn, _conv_backward_kernel)
                     if causal_conv1d_fn is not None else None)
_FIXED_ORDER_PATH = "causal_conv1d.causal_conv1d_fn+" + (
    "triton.conv_backward_triton" if conv_backward_triton is not None else "torch.conv_backward_torch")


def conv_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The short causal conv taken on ``device``; under deterministic training (the default) causal_conv1d's
    forward with a backward that sums in a fixed order (Triton's kernel, or torch ops without
    Triton)."""
    deterministic = deterministic_chosen()  # a bad value is reported on every device
    if device.type == "cuda" and not use_reference() and causal_conv1d_fn is not None:
        if deterministic:
            return _FIXED_ORDER_FAST, KernelChoice(_FIXED_ORDER_PATH, True)
        return causal_conv1d_fn, KernelChoice("causal_conv1d.causal_conv1d_fn", True)
    why = _MISSING if device.type == "cuda" and causal_conv1d_fn is None else ""
    return causal_conv1d_ref, KernelChoice("reference.causal_conv1d_ref", False, why)
