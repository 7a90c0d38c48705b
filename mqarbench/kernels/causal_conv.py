"""Short depthwise causal convolution: causal_conv1d's CUDA kernel and a PyTorch reference.

x (B, D, L), weight (D, K), bias (D,): out_t = act(bias + sum_j weight[:, j] * x_{t-K+1+j}).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference
from mqarbench.kernels.determinism import deterministic_chosen

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


class _FixedOrderConv(torch.autograd.Function):
    """``conv``'s forward; a backward whose weight and bias gradients are torch reductions (a
    fixed summation order) instead of causal_conv1d's atomic adds, so reruns repeat bit for bit."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu: bool, conv: Callable):
        ctx.save_for_backward(x, weight, bias)
        ctx.silu, ctx.conv = silu, conv
        return conv(x, weight, bias, activation="silu" if silu else None)

    @staticmethod
    def backward(ctx, dout):  # dout (B, D, L)
        x, weight, bias = ctx.saved_tensors
        conv, width, length = ctx.conv, weight.shape[1], x.shape[-1]
        work = torch.promote_types(dout.dtype, torch.float32)
        dpre = dout.to(work)
        if ctx.silu:  # recomputed, not stored: one more conv instead of a (B, D, L) activation;
            # from an fp32 x, so the conv's output is not rounded to x's dtype before silu's slope
            pre = conv(x.to(work), weight, bias, activation=None)
            gate = torch.sigmoid(pre)
            dpre = dpre * gate * (1 + pre * (1 - gate))  # d silu / d pre
        # x's gradient is the same causal conv run backwards in time
        dx = conv(dpre.flip(-1), weight, None, activation=None).flip(-1).to(x.dtype)
        padded = F.pad(x.to(work), (width - 1, 0))  # (B, D, L + W - 1)
        dweight = torch.stack([(dpre * padded[..., j:j + length]).sum((0, 2)) for j in range(width)], -1)
        dbias = dpre.sum((0, 2)).to(bias.dtype) if bias is not None else None
        return dx, dweight.to(weight.dtype), dbias, None, None


def fixed_order_conv(conv: Callable) -> Callable:
    """``conv`` (causal_conv1d_fn's signature) with the fixed-order backward of _FixedOrderConv."""

    def run(x, weight, bias=None, activation: str | None = None):
        return _FixedOrderConv.apply(x, weight, bias, activation in ("silu", "swish"), conv)

    return run


_FIXED_ORDER_FAST = fixed_order_conv(causal_conv1d_fn) if causal_conv1d_fn is not None else None


def conv_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The short causal conv taken on ``device``; with MQARBENCH_DETERMINISTIC=1 causal_conv1d's
    kernel with a backward that sums in a fixed order."""
    deterministic = deterministic_chosen()  # a bad value is reported on every device
    if device.type == "cuda" and not use_reference() and causal_conv1d_fn is not None:
        if deterministic:
            return _FIXED_ORDER_FAST, KernelChoice("causal_conv1d.causal_conv1d_fn+fixed_order_backward", True)
        return causal_conv1d_fn, KernelChoice("causal_conv1d.causal_conv1d_fn", True)
    why = _MISSING if device.type == "cuda" and causal_conv1d_fn is None else ""
    return causal_conv1d_ref, KernelChoice("reference.causal_conv1d_ref", False, why)
