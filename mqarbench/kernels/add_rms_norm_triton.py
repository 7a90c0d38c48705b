"""Residual add + RMSNorm in Triton, by tiles of rows: forward and backward.

The contract of ``add_rms_norm_ref`` (and of mamba_ssm's ``rms_norm_fn`` with ``prenorm=True,
residual_in_fp32=True``): residual = hidden + residual in fp32, normed = residual * rstd * weight
in hidden's dtype, rstd = 1 / sqrt(mean(residual^2) + eps) per row. Why not mamba_ssm's kernel:
its backward runs one program per SM, each walking its share of rows one at a time, so at
``small`` (16,384 rows of 128 channels) a call takes 74 us on an H200, a tenth of a graphed mamba
step (docs/benchmarks.md). Here a program owns a tile of BLOCK_M rows x all channels, so the
rows run in parallel; the weight's gradient is summed per program and those sums are added by
torch in a fixed order (deterministic, no atomics).
"""

from __future__ import annotations

import torch

from mqarbench.kernels.triton_support import launch_device, triton

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _add_rms_norm_fwd(x, res, w, y, res_out, rstd_out, n_rows, n_cols, eps,
                          HAS_RES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """One tile: residual_out = x + res (fp32), y = residual_out * rstd * w, rstd per row.
        Every tensor is (rows, n_cols) contiguous."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        inside = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
        at = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]  # (BLOCK_M, BLOCK_N)
        r = tl.load(x + at, mask=inside, other=0.0).to(tl.float32)
        if HAS_RES:
            r += tl.load(res + at, mask=inside, other=0.0).to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(r * r, axis=1) / n_cols + eps)  # (BLOCK_M,)
        weight = tl.load(w + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        out = r * rstd[:, None] * weight[None, :]
        tl.store(y + at, out.to(y.dtype.element_ty), mask=inside)
        tl.store(res_out + at, r, mask=inside)
        tl.store(rstd_out + rows, rstd, mask=rows < n_rows)

    @triton.jit
    def _add_rms_norm_bwd(dy, dres_out, r_in, w, rstd_in, dx, dres, dw_part, n_rows, n_cols,
                          HAS_DRES_OUT: tl.constexpr, HAS_DRES: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """One tile: d residual = (w dy - xhat mean(xhat w dy)) rstd (+ the residual output's
        gradient), written as dx (x's dtype) and dres (fp32); the tile's sum of dy * xhat
        into its row of dw_part."""
        pid = tl.program_id(0)
        rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        inside = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
        at = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        rstd = tl.load(rstd_in + rows, mask=rows < n_rows, other=0.0)  # (BLOCK_M,)
        xhat = tl.load(r_in + at, mask=inside, other=0.0) * rstd[:, None]
        grad = tl.load(dy + at, mask=inside, other=0.0).to(tl.float32)
        weight = tl.load(w + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        wdy = grad * weight[None, :]
        mean = tl.sum(xhat * wdy, axis=1) / n_cols  # (BLOCK_M,)
        d = (wdy - xhat * mean[:, None]) * rstd[:, None]
        if HAS_DRES_OUT:
            d += tl.load(dres_out + at, mask=inside, other=0.0).to(tl.float32)
        tl.store(dx + at, d.to(dx.dtype.element_ty), mask=inside)
        if HAS_DRES:
            tl.store(dres + at, d, mask=inside)
        tl.store(dw_part + pid * n_cols + cols, tl.sum(grad * xhat, axis=0), mask=cols < n_cols)


def _tile(n_cols: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N): all channels in one block, about 4,096 elements a tile."""
    block_n = triton.next_power_of_2(n_cols)
    return max(1, min(64, 4096 // block_n)), block_n


class _AddRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, residual, weight, eps):
        shape, n_cols = hidden.shape, hidden.shape[-1]
        x = hidden.reshape(-1, n_cols).contiguous()  # (M, N)
        res = None if residual is None else residual.reshape(-1, n_cols).contiguous()
        rows = x.shape[0]
        y = torch.empty_like(x)  # in hidden's dtype
        res_out = torch.empty(rows, n_cols, device=x.device, dtype=torch.float32)
        rstd = torch.empty(rows, device=x.device, dtype=torch.float32)
        block_m, block_n = _tile(n_cols)
        with launch_device(x):
            _add_rms_norm_fwd[(triton.cdiv(rows, block_m),)](
                x, res if res is not None else x, weight, y, res_out, rstd, rows, n_cols, eps,
                HAS_RES=res is not None, BLOCK_M=block_m, BLOCK_N=block_n)
        ctx.save_for_backward(res_out, rstd, weight)
        ctx.meta = (shape, hidden.dtype, residual is not None)
        return y.reshape(shape), res_out.reshape(shape)

    @staticmethod
    def backward(ctx, dy, dres_out):
        res_out, rstd, weight = ctx.saved_tensors
        shape, dtype, has_res = ctx.meta
        rows, n_cols = res_out.shape
        block_m, block_n = _tile(n_cols)
        programs = triton.cdiv(rows, block_m)
        dy = dy.reshape(rows, n_cols).contiguous()
        dres_out = None if dres_out is None else dres_out.reshape(rows, n_cols).contiguous()
        dx = torch.empty(rows, n_cols, device=dy.device, dtype=dtype)
        dres = torch.empty(rows, n_cols, device=dy.device, dtype=torch.float32) if has_res else None
        dw_part = torch.empty(programs, n_cols, device=dy.device, dtype=torch.float32)
        with launch_device(dy):
            _add_rms_norm_bwd[(programs,)](
                dy, dres_out if dres_out is not None else dy, res_out, weight, rstd, dx,
                dres if dres is not None else dx, dw_part, rows, n_cols,
                HAS_DRES_OUT=dres_out is not None, HAS_DRES=has_res, BLOCK_M=block_m, BLOCK_N=block_n)
        dweight = dw_part.sum(0).to(weight.dtype)  # (N,), a fixed order of the tiles' sums
        return dx.reshape(shape), None if dres is None else dres.reshape(shape), dweight, None


def add_rms_norm_triton(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed in hidden's dtype, residual in fp32): hidden, residual (..., N), weight (N,)."""
    return _AddRMSNorm.apply(hidden, residual, weight, eps)
