"""The short causal conv's backward in Triton, summed in a fixed order (deterministic training).

x (B, D, L), weight (D, W), bias (D,): out_t = act(pre_t), pre_t = bias + sum_j weight[:, j]
x_{t-W+1+j}, the contract of ``causal_conv.causal_conv1d_ref``. Given dout, one kernel writes
    dpre_t = dout_t silu'(pre_t)   (pre recomputed in fp32 from x; dpre = dout without silu),
    dx_t = sum_k weight[:, W-1-k] dpre_{t+k},
and each program's sums over its time block of dpre_t x_{t-W+1+j} (the weight's gradient) and of
dpre_t (the bias's) into its own row of a partials buffer, which torch sums over the programs
afterwards. No atomics, so two calls give the same bits; causal_conv1d's backward adds the
weight and bias gradients with atomics, in an order that changes from call to call.

A program owns one batch row, BLOCK_D channels and BLOCK_L steps. dx at a block's last W-1
steps needs dpre just past the block: the program recomputes it (W is at most a handful of taps)
rather than exchanging it with its neighbour. Inputs may be any strided views (channels-last
ones too); every sum is taken in fp32.
"""

from __future__ import annotations

import torch

from mqarbench.kernels.triton_support import launch_device, triton

if triton is not None:
    import triton.language as tl

BLOCK_D = 16
BLOCK_L = 128


if triton is not None:

    @triton.jit
    def _at(ptr, sd, sl, d, ok_d, t, L):
        """A (BLOCK_D, BLOCK_L) fp32 tile of ptr[d, t], zero outside 0 <= t < L (the causal pad)."""
        ok = ok_d[:, None] & (t[None, :] >= 0) & (t[None, :] < L)
        return tl.load(ptr + d[:, None] * sd + t[None, :] * sl, mask=ok, other=0.0).to(tl.float32)

    @triton.jit
    def _dpre(x, x_sd, x_sl, dout, o_sd, o_sl, w_ptr, w_sd, w_sw, bias, d, ok_d, s, L,
              W: tl.constexpr, SILU: tl.constexpr):
        """dL/dpre at steps s: dout, times silu's slope at the recomputed pre-activation."""
        g = _at(dout, o_sd, o_sl, d, ok_d, s, L)
        if SILU:
            pre = tl.zeros_like(g) + bias[:, None]
            for j in tl.static_range(W):
                w_j = tl.load(w_ptr + d * w_sd + j * w_sw, mask=ok_d, other=0.0).to(tl.float32)
                pre += w_j[:, None] * _at(x, x_sd, x_sl, d, ok_d, s - (W - 1) + j, L)
            gate = tl.sigmoid(pre)
            g = g * gate * (1 + pre * (1 - gate))
        return g

    @triton.jit
    def _conv_bwd_kernel(x_ptr, x_sb, x_sd, x_sl, w_ptr, w_sd, w_sw, bias_ptr,
                         dout_ptr, o_sb, o_sd, o_sl, dx_ptr, dx_sb, dx_sd, dx_sl, dw_part, db_part,
                         D, L, W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
        pid_l, pid_d, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        ok_d = d < D
        t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
        b64 = b.to(tl.int64)
        x, dout = x_ptr + b64 * x_sb, dout_ptr + b64 * o_sb
        if HAS_BIAS:
            bias = tl.load(bias_ptr + d, mask=ok_d, other=0.0).to(tl.float32)
        else:
            bias = tl.zeros([BLOCK_D], dtype=tl.float32)

        dpre = _dpre(x, x_sd, x_sl, dout, o_sd, o_sl, w_ptr, w_sd, w_sw, bias, d, ok_d, t, L, W, SILU)
        w_last = tl.load(w_ptr + d * w_sd + (W - 1) * w_sw, mask=ok_d, other=0.0).to(tl.float32)
        dx = w_last[:, None] * dpre
        for k in tl.static_range(1, W):  # dpre_{t+k} meets tap W-1-k; past L it is zero
            ahead = _dpre(x, x_sd, x_sl, dout, o_sd, o_sl, w_ptr, w_sd, w_sw, bias, d, ok_d, t + k, L,
                          W, SILU)
            w_k = tl.load(w_ptr + d * w_sd + (W - 1 - k) * w_sw, mask=ok_d, other=0.0).to(tl.float32)
            dx += w_k[:, None] * ahead
        ok = ok_d[:, None] & (t[None, :] < L)
        dx_at = dx_ptr + b64 * dx_sb + d[:, None] * dx_sd + t[None, :] * dx_sl
        tl.store(dx_at, dx.to(dx_ptr.dtype.element_ty), mask=ok)

        part = (b64 * tl.num_programs(0) + pid_l) * D + d  # this program's row of the partials
        for j in tl.static_range(W):
            x_j = _at(x, x_sd, x_sl, d, ok_d, t - (W - 1) + j, L)
            tl.store(dw_part + part * W + j, tl.sum(dpre * x_j, axis=1), mask=ok_d)
        tl.store(db_part + part, tl.sum(dpre, axis=1), mask=ok_d)


def conv_backward_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         dout: torch.Tensor, silu: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(dx, dweight, dbias) of the short causal conv for ``dout`` (B, D, L), deterministic.

    dx has x's dtype, dweight the weight's, dbias the bias's (None without a bias)."""
    if triton is None:
        raise RuntimeError("conv_backward_triton needs triton")
    batch, dim, length = x.shape
    width = weight.shape[1]
    n_l = triton.cdiv(length, BLOCK_L)
    dx = torch.empty((batch, dim, length), dtype=x.dtype, device=x.device)  # (B, D, L)
    dw_part = torch.empty((batch * n_l, dim, width), dtype=torch.float32, device=x.device)
    db_part = torch.empty((batch * n_l, dim), dtype=torch.float32, device=x.device)
    grid = (n_l, triton.cdiv(dim, BLOCK_D), batch)
    with launch_device(x):
        _conv_bwd_kernel[grid](
            x, *x.stride(), weight, *weight.stride(), bias if bias is not None else weight,
            dout, *dout.stride(), dx, *dx.stride(), dw_part, db_part, dim, length,
            W=width, SILU=silu, HAS_BIAS=bias is not None, BLOCK_D=BLOCK_D, BLOCK_L=BLOCK_L)
    # torch's sum over the programs' rows: a fixed order, unlike atomic adds
    dweight = dw_part.sum(0).to(weight.dtype)
    dbias = db_part.sum(0).to(bias.dtype) if bias is not None else None
    return dx, dweight, dbias
