"""One autograd function for a Global Selection mixer (in the style of mamba_ssm's mamba_inner_fn).

    xz (B, 2E, L) -> x, z;  u = SiLU(short causal conv(x));  x_dbl = x_proj(u) -> dt, B, C
    delta = (W_dt dt) * SiLU(LongConv(x));  y = scan(u, delta + b_dt, A, B, C, D, z)
    out = out_proj(y) (B, L, d_model)

The gate enters between x_proj and the scan, where mamba_inner_fn has no place for it. This
function calls causal_conv1d and mamba_ssm's selective-scan kernels itself, so nothing but the
inputs, x_dbl and the scan's own checkpoints is kept for backward: the short conv, delta and the
long conv are recomputed there (the unfused path keeps an fp32 FFT of every layer). With the
Triton long conv (MQARBENCH_LONG_CONV=triton) delta comes from one kernel, the conv with the
gate's bias, SiLU and product with dt as its epilogue (``gated_delta``), and its backward from
one recomputing pass that writes dt_proj's gradient in its own layout (``gated_delta_backward``),
the kernel gradient, and the input gradient with the short conv's part added in its epilogue,
written into dxz (``long_conv_input_grad``), instead of a dozen elementwise passes over fp32
(B, E, L) tensors. The scan's backward writes dz straight into dxz. The unfused path of
``GlobalSelectionMixer`` stays the reference.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference
from mqarbench.kernels.causal_conv import causal_conv1d_fn
from mqarbench.kernels.selective_scan import triton_scan_chosen
from mqarbench.kernels.long_conv import global_long_conv_impl, long_conv_like_conv1d
from mqarbench.kernels.long_conv_triton import (gated_delta, gated_delta_backward,
                                                long_conv_input_grad, long_conv_triton)

try:  # mamba_ssm's compiled scan; missing on CPU machines
    import selective_scan_cuda
except Exception as err:  # noqa: BLE001 - any import failure means "no fast path"
    selective_scan_cuda = None
    _MISSING = f"mamba_ssm's selective_scan_cuda not importable ({type(err).__name__})"
else:
    _MISSING = ""


def _scan_fwd(u, delta, A, B, C, D, z, delta_bias):
    """selective_scan_cuda.fwd with softplus: [out, checkpoints, out_z]. Builds with
    variable-length support take a trailing cu_seqlens; older ones do not."""
    try:
        return selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, True)
    except TypeError:
        return selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, True, None)


def _scan_bwd(u, delta, A, B, C, D, z, delta_bias, dout, checkpoints, out, dz=None):
    """selective_scan_cuda.bwd recomputing out_z: [du, ddelta, dA, dB, dC, dD, ddelta_bias,
    dz, out_z]; dz, when given, is where it writes z's gradient (a view of dxz: no concat)."""
    args = (u, delta, A, B, C, D, z, delta_bias, dout, checkpoints, out, dz, True, True)
    try:
        return selective_scan_cuda.bwd(*args)
    except TypeError:
        return selective_scan_cuda.bwd(*args, None)


# The kernels the function calls; CPU tests swap in references to check the glue around them.
KERNELS: dict[str, Callable] = {"conv": causal_conv1d_fn, "scan_fwd": _scan_fwd,
                                "scan_bwd": _scan_bwd}


def _bl_to_bdl(flat: torch.Tensor, batch: int) -> torch.Tensor:
    """(D, B*L) -> (B, D, L) view with unit stride along L (no copy)."""
    return flat.view(flat.shape[0], batch, -1).transpose(0, 1)


def _fused_gate(device: torch.device, width: int) -> bool:
    """Whether delta comes from the Triton gate kernels (the Triton long conv is dispatched for
    layers of ``width`` channels)."""
    return global_long_conv_impl(device, width)[0] is long_conv_triton


def _long_kernel(long_weight: torch.Tensor) -> torch.Tensor:
    """nn.Conv1d's depthwise weight (E, 1, K) -> (E, K) fp32 in long_conv_direct's tap order."""
    return long_weight[:, 0].flip(-1).float()


def _b1nl(cols: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*L, N) columns of x_dbl -> (B, 1, N, L) contiguous, the scan's variable B/C layout."""
    return cols.reshape(batch, -1, cols.shape[-1]).transpose(1, 2).unsqueeze(1).contiguous()


class GlobalSelectionInnerFn(torch.autograd.Function):
    """See the module docstring. Weights in fp32 are cast to xz's dtype (bf16 under autocast)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, out_proj_weight,
                A, D, dt_bias, long_weight, long_bias):
        batch, _, length = xz.shape
        rank, n_state = dt_proj_weight.shape[1], A.shape[1]
        dtype = xz.dtype
        x, z = xz.chunk(2, dim=1)  # (B, E, L) each, unit stride along L
        u = KERNELS["conv"](x, conv_weight[:, 0], conv_bias, activation="silu")  # (B, E, L)
        u_flat = u.transpose(1, 2).reshape(batch * length, -1)  # (B*L, E)
        x_dbl = F.linear(u_flat, x_proj_weight.to(dtype))  # (B*L, R + 2N)
        dt_raw = _bl_to_bdl(dt_proj_weight.to(dtype) @ x_dbl[:, :rank].t(), batch)  # (B, E, L)
        if _fused_gate(xz.device, xz.shape[1] // 2):
            delta = gated_delta(x, _long_kernel(long_weight), long_bias, dt_raw)  # (B, E, L)
        else:
            gate = F.silu(long_conv_like_conv1d(x, long_weight, long_bias))  # (B, E, L) fp32
            delta = (dt_raw * gate.to(dtype)).contiguous()
        b_var = _b1nl(x_dbl[:, rank:rank + n_state], batch)  # (B, 1, N, L)
        c_var = _b1nl(x_dbl[:, rank + n_state:], batch)
        out, checkpoints, out_z = KERNELS["scan_fwd"](u, delta, A, b_var, c_var, D, z, dt_bias)[:3]
        ctx.has_conv_bias, ctx.has_long_bias = conv_bias is not None, long_bias is not None
        ctx.save_for_backward(xz, conv_weight, conv_bias, x_dbl, x_proj_weight, dt_proj_weight,
                              out_proj_weight, A, D, dt_bias, long_weight, long_bias,
                              checkpoints, out)
        return F.linear(out_z.transpose(1, 2), out_proj_weight.to(dtype))  # (B, L, d_model)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout):  # dout (B, L, d_model)
        (xz, conv_weight, conv_bias, x_dbl, x_proj_weight, dt_proj_weight, out_proj_weight,
         A, D, dt_bias, long_weight, long_bias, checkpoints, out) = ctx.saved_tensors
        batch, _, length = xz.shape
        rank, n_state = dt_proj_weight.shape[1], A.shape[1]
        dtype = xz.dtype
        x, z = xz.chunk(2, dim=1)
        leaves = [x.detach().requires_grad_(), conv_weight.detach()[:, 0].requires_grad_()]
        if ctx.has_conv_bias:
            leaves.append(conv_bias.detach().requires_grad_())
        fused_gate = _fused_gate(xz.device, xz.shape[1] // 2)
        if not fused_gate:  # the long conv's weights join the short conv's in autograd
            long_leaves = [long_weight.detach().requires_grad_()]
            if ctx.has_long_bias:
                long_leaves.append(long_bias.detach().requires_grad_())
        dt_raw = _bl_to_bdl(dt_proj_weight.to(dtype) @ x_dbl[:, :rank].t(), batch)
        with torch.enable_grad():  # recompute what forward did not keep, with its graph
            u = KERNELS["conv"](*leaves, activation="silu")  # (B, E, L)
            if not fused_gate:
                bias_leaf = long_leaves[1] if ctx.has_long_bias else None
                gate = F.silu(long_conv_like_conv1d(leaves[0], long_leaves[0], bias_leaf))  # fp32
        u_d = u.detach()
        if fused_gate:
            kernel = _long_kernel(long_weight)  # (E, K) fp32
            delta = gated_delta(x, kernel, long_bias, dt_raw)
        else:
            gate_d = gate.detach()
            delta = (dt_raw * gate_d.to(dtype)).contiguous()
        b_var = _b1nl(x_dbl[:, rank:rank + n_state], batch)
        c_var = _b1nl(x_dbl[:, rank + n_state:], batch)

        dout_t = dout.reshape(batch * length, -1).t()  # (d_model, B*L)
        dout_y = _bl_to_bdl(out_proj_weight.to(dtype).t() @ dout_t.to(dtype), batch)  # (B, E, L)
        dxz = torch.empty_like(xz)  # (B, 2E, L): the scan writes dz into its second half
        dx_out, dz_out = dxz.chunk(2, dim=1)
        du, ddelta, dA, dB, dC, dD, ddt_bias, dz, out_z = KERNELS["scan_bwd"](
            u_d, delta, A, b_var, c_var, D, z, dt_bias, dout_y, checkpoints, out, dz_out)[:9]
        if dz.data_ptr() != dz_out.data_ptr():  # a scan that allocates dz itself
            dz_out.copy_(dz)
        dout_proj_weight = torch.einsum("eB,dB->ed", dout_t.to(dtype),
                                        out_z.transpose(0, 1).reshape(out_z.shape[1], -1))

        # delta = dt_raw * gate: split its gradient between dt_proj and the long conv's gate.
        if fused_gate:  # the kernel writes d dt_raw in dt_proj's layout, (E, B*L)
            ddt_raw = torch.empty(ddelta.shape[1], batch * length, device=ddelta.device,
                                  dtype=ddelta.dtype)
            dpre, dkernel, dlong_bias, _ = gated_delta_backward(
                x, kernel, long_bias, dt_raw, ddelta, ddt_out=_bl_to_bdl(ddt_raw, batch))
        else:
            ddt_raw = (ddelta * gate_d.to(ddelta.dtype)).transpose(0, 1).reshape(ddelta.shape[1], -1)
        dx_dbl = torch.empty_like(x_dbl)  # (B*L, R + 2N)
        dx_dbl[:, :rank] = ddt_raw.t() @ dt_proj_weight.to(dtype)
        dx_dbl[:, rank:rank + n_state] = dB.squeeze(1).transpose(1, 2).reshape(-1, n_state)
        dx_dbl[:, rank + n_state:] = dC.squeeze(1).transpose(1, 2).reshape(-1, n_state)
        ddt_proj_weight = ddt_raw @ x_dbl[:, :rank]  # (E, R)
        u_flat = u_d.transpose(1, 2).reshape(batch * length, -1)  # (B*L, E)
        dx_proj_weight = dx_dbl.t() @ u_flat  # (R + 2N, E)
        du = du + (dx_dbl @ x_proj_weight.to(dtype)).view(batch, length, -1).transpose(1, 2)
        if fused_gate:
            grads = torch.autograd.grad(u, leaves, du.to(u.dtype).contiguous())
            # the short conv's and the long conv's parts of dx, summed in fp32 by the kernel
            long_conv_input_grad(dpre, kernel, add=grads[0], out=dx_out)
            dlong_weight = dkernel.flip(-1)[:, None].to(long_weight.dtype)
            dlong_bias = dlong_bias.to(long_bias.dtype) if ctx.has_long_bias else None
        else:
            dgate = ddelta.float() * dt_raw.float()  # (B, E, L) fp32, the gate's dtype
            grads = torch.autograd.grad([u, gate], leaves + long_leaves,
                                        [du.to(u.dtype).contiguous(), dgate])
            dx_out.copy_(grads[0])
            dlong_weight = grads[len(leaves)]
            dlong_bias = grads[len(leaves) + 1] if ctx.has_long_bias else None
        dconv_weight = grads[1][:, None]
        dconv_bias = grads[2] if ctx.has_conv_bias else None
        return (dxz, dconv_weight, dconv_bias, dx_proj_weight.to(x_proj_weight.dtype),
                ddt_proj_weight.to(dt_proj_weight.dtype),
                dout_proj_weight.to(out_proj_weight.dtype), dA, dD, ddt_bias,
                dlong_weight, dlong_bias)


def global_selection_inner_fn(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight,
                              out_proj_weight, A, D, dt_bias, long_weight, long_bias):
    """The mixer from xz (B, 2E, L) to (B, L, d_model); weights as the modules hold them:
    conv_weight (E, 1, d_conv), long_weight (E, 1, K) in nn.Conv1d's tap order, A (E, N) fp32,
    D and dt_bias (E,) fp32; the biases may be None."""
    return GlobalSelectionInnerFn.apply(xz, conv_weight, conv_bias, x_proj_weight,
                                        dt_proj_weight, out_proj_weight, A, D, dt_bias,
                                        long_weight, long_bias)


def global_selection_inner_impl(device: torch.device) -> tuple[Callable | None, KernelChoice]:
    """The fused Global Selection mixer on ``device``, if its kernels are there. It calls
    mamba_ssm's scan kernels, so our Triton scan (deterministic training, the default, or
    MQARBENCH_SELECTIVE_SCAN=triton) leaves it out."""
    ready = selective_scan_cuda is not None and causal_conv1d_fn is not None
    if device.type == "cuda" and not use_reference() and ready and not triton_scan_chosen():
        return global_selection_inner_fn, KernelChoice(
            "mqarbench.global_selection_inner_fn", True)
    why = ""
    if device.type == "cuda" and not ready:
        why = _MISSING or "causal_conv1d not importable (pip install causal-conv1d)"
    return None, KernelChoice("reference.unfused", False, why)
