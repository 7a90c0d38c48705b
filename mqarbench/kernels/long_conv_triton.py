"""Depthwise causal long convolution (Global Selection) in Triton: forward and both gradients.

x (B, D, L), kernel (D, K): out[b, d, t] = sum_{j<K, j<=t} kernel[d, j] * x[b, d, t-j], the contract
of ``long_conv_direct``. Per channel the convolution is a Toeplitz matrix, so the kernels run it
as matmuls on tensor cores: one program owns one channel and a block of BB batch rows (the
matmul's M), builds that channel's Toeplitz blocks once from its kernel row, and reuses them for
every time block of BT outputs, each a (BB, KP + BT) window of the input (the block and the KP
>= K - 1 positions before it) times a (KP + BT, BT) Toeplitz block. The input gradient is the
same with the window after the block (anti-causal); the kernel gradient accumulates per channel
the (BT, KP + BT) matrix dout_block^T @ window over batch and time, whose diagonal sums (taken in
torch) are the taps' gradients. The zeros of the Toeplitz blocks waste about BT / (KP + BT) of
the MACs, which tensor cores afford where the direct form's taps on CUDA cores did not.

Global Selection's gate rides on the same kernel as an epilogue: ``gated_delta`` computes
delta = dt * SiLU(conv(x) + bias) block by block without writing the conv out, and
``gated_delta_backward`` recomputes it to form the gate and dpre = ddelta * dt * SiLU'(pre), then
runs the input- and kernel-gradient kernels on dpre. Inputs may be channel slices or transposed
views (rows at b * stride_b + d * stride_d, unit stride along L), so xz and dt_proj's output are
read in place.

Dtypes: with bf16 x the matmul operands (x, the kernel row, dout) are rounded to bf16, as
nn.Conv1d does under autocast; otherwise they are fp32 with input_precision="ieee" (fp64 inputs
are computed in fp32). Products are always accumulated in fp32 and the output is fp32
(promote_types(x.dtype, float32)); dx has x's dtype and dkernel the kernel's. No atomics: the
kernel gradient's batch split is summed by torch in a fixed order.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

try:  # Triton ships with CUDA builds of torch; missing on CPU-only machines
    import triton
    import triton.language as tl
except Exception as err:  # noqa: BLE001 - any import failure means "no Triton path"
    triton = None
    _MISSING = f"triton not importable ({type(err).__name__})"
else:
    _MISSING = ""

MAX_BLOCK_B = 32  # batch rows per program (matmul M): >= 16 for tl.dot, 32 covers B = 32 at once
MAX_BLOCK_T = 64  # times per block: the Toeplitz zeros cost BT / (KP + BT) of the MACs
TARGET_PROGRAMS = 1024  # dkernel splits the batch blocks until about this many programs run


if triton is not None:

    @triton.jit
    def _taps(w_row, n_taps, j, BF16: tl.constexpr):
        """A Toeplitz block from a grid of tap indices j: w_row[j] where 0 <= j < n_taps, else 0."""
        w = tl.load(w_row + j, mask=(j >= 0) & (j < n_taps), other=0.0)
        if BF16:
            return w.to(tl.bfloat16)
        else:
            return w.to(tl.float32)

    @triton.jit
    def _mm(a, b, acc, BF16: tl.constexpr):
        """acc + a @ b on tensor cores in bf16, or in true fp32 (no TF32) for fp32 inputs."""
        if BF16:
            return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
        else:
            return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")

    @triton.jit
    def _gate_epilogue(acc, d, rows, pos, ok, offs_b, out_ptr, bias_ptr, dt_ptr, dt_sb, dt_sd,
                       dd_ptr, dd_sb, dd_sd, gate_ptr, GATE: tl.constexpr, HAS_BIAS: tl.constexpr):
        """Global Selection's gate on a block of the conv, acc (BB, BT) fp32: pre = acc + bias,
        gate = SiLU(pre). GATE 1 stores delta = dt * gate with the gate rounded to dt's dtype
        first, as the unfused mixer computes it; GATE 2 stores that rounded gate and
        dpre = ddelta * dt * SiLU'(pre) in fp32, the gradient the conv's backward takes."""
        pre = acc
        if HAS_BIAS:
            pre = pre + tl.load(bias_ptr + d).to(tl.float32)
        sig = tl.sigmoid(pre)
        gate = (pre * sig).to(dt_ptr.dtype.element_ty)
        b64 = offs_b.to(tl.int64)
        dt = tl.load(dt_ptr + (b64 * dt_sb + d * dt_sd)[:, None] + pos[None, :], mask=ok,
                     other=0.0).to(tl.float32)  # (BB, BT)
        if GATE == 1:
            delta = dt * gate.to(tl.float32)
            tl.store(out_ptr + rows[:, None] + pos[None, :], delta.to(out_ptr.dtype.element_ty), mask=ok)
        else:
            dd = tl.load(dd_ptr + (b64 * dd_sb + d * dd_sd)[:, None] + pos[None, :], mask=ok,
                         other=0.0).to(tl.float32)
            tl.store(gate_ptr + rows[:, None] + pos[None, :], gate, mask=ok)
            dpre = dd * dt * (sig * (1.0 + pre * (1.0 - sig)))  # SiLU'(pre) = s (1 + pre (1 - s))
            tl.store(out_ptr + rows[:, None] + pos[None, :], dpre, mask=ok)

    @triton.jit
    def _conv_kernel(src_ptr, src_sb, src_sd, w_ptr, out_ptr, B, D, L, K, N_TAPS,
                     bias_ptr, dt_ptr, dt_sb, dt_sd, dd_ptr, dd_sb, dd_sd, gate_ptr,
                     REVERSE: tl.constexpr, GATE: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BF16: tl.constexpr, BB: tl.constexpr, BT: tl.constexpr, KP: tl.constexpr):
        """out[b, d, t] = sum_{j < N_TAPS} w[d, j] * src[b, d, t - j] (causal; forward) or
        src[b, d, t + j] (anti-causal; REVERSE, the input gradient); with GATE > 0 the gate
        epilogue above instead. One program: channel d, BB batch rows, every time block. The
        window of a block starting at t0 is its own BT positions plus a halo of KP: before it
        (t0 - KP..) causal, after it (t0 + BT..) reversed; two dots (own, halo) keep both widths
        powers of two. src rows (b, d) start at b src_sb + d src_sd (unit stride along L, so a
        channel slice of xz needs no copy); out is contiguous (B, D, L)."""
        d, pid_b = tl.program_id(0), tl.program_id(1)
        offs_b = pid_b * BB + tl.arange(0, BB)  # (BB,)
        mask_b = offs_b < B
        rows = (offs_b.to(tl.int64) * D + d) * L  # (BB,) int64: B D L may pass 2^31
        src_rows = offs_b.to(tl.int64) * src_sb + d * src_sd  # (BB,)
        r_own = tl.arange(0, BT)  # window index within the own block
        r_halo = tl.arange(0, KP)  # window index within the halo
        t = tl.arange(0, BT)  # output index within the block
        w_row = w_ptr + d * K
        # The Toeplitz blocks, built once: entry (r, t) is the tap joining window r to output t.
        if REVERSE:  # dx[s0 + t] = sum_j w[j] dout[s0 + t + j]
            t_own = _taps(w_row, N_TAPS, r_own[:, None] - t[None, :], BF16)  # (BT, BT)
            t_halo = _taps(w_row, N_TAPS, BT + r_halo[:, None] - t[None, :], BF16)  # (KP, BT)
            halo_start = BT
        else:  # out[t0 + t] = sum_j w[j] x[t0 + t - j]
            t_own = _taps(w_row, N_TAPS, t[None, :] - r_own[:, None], BF16)  # (BT, BT)
            t_halo = _taps(w_row, N_TAPS, t[None, :] + KP - r_halo[:, None], BF16)  # (KP, BT)
            halo_start = -KP
        for t0 in range(0, L, BT):
            pos = t0 + r_own  # (BT,)
            pos_h = t0 + halo_start + r_halo  # (KP,)
            ok = mask_b[:, None] & (pos < L)[None, :]  # (BB, BT)
            ok_h = mask_b[:, None] & ((pos_h >= 0) & (pos_h < L))[None, :]  # zero padding
            own = tl.load(src_ptr + src_rows[:, None] + pos[None, :], mask=ok, other=0.0)  # (BB, BT)
            # (BB, KP)
            halo = tl.load(src_ptr + src_rows[:, None] + pos_h[None, :], mask=ok_h, other=0.0)
            acc = _mm(own, t_own, tl.zeros((BB, BT), dtype=tl.float32), BF16)
            acc = _mm(halo, t_halo, acc, BF16)  # (BB, BT) fp32
            if GATE == 0:
                tl.store(out_ptr + rows[:, None] + pos[None, :], acc, mask=ok)
            else:
                _gate_epilogue(acc, d, rows, pos, ok, offs_b, out_ptr, bias_ptr, dt_ptr, dt_sb,
                               dt_sd, dd_ptr, dd_sb, dd_sd, gate_ptr, GATE, HAS_BIAS)

    @triton.jit
    def _dkernel_kernel(dout_ptr, x_ptr, x_sb, x_sd, c_ptr, B, D, L, N_SPLIT, BF16: tl.constexpr,
                        BB: tl.constexpr, BT: tl.constexpr, KP: tl.constexpr):
        """c[split, d, t, r] = sum over this split's batch blocks and every time block t0 of
        dout[b, d, t0 + t] * x[b, d, t0 - KP + r], r < KP + BT: the (BT, KP + BT) matrix
        dout_block^T @ window, halo columns first. Its diagonal sums are the tap gradients.
        dout is contiguous; x's rows start at b x_sb + d x_sd."""
        d, split = tl.program_id(0), tl.program_id(1)
        r_own = tl.arange(0, BT)
        r_halo = tl.arange(0, KP)
        acc_own = tl.zeros((BT, BT), dtype=tl.float32)
        acc_halo = tl.zeros((BT, KP), dtype=tl.float32)
        for b0 in range(split * BB, B, N_SPLIT * BB):
            offs_b = b0 + tl.arange(0, BB)  # (BB,)
            mask_b = offs_b < B
            rows = (offs_b.to(tl.int64) * D + d) * L  # (BB,)
            x_rows = offs_b.to(tl.int64) * x_sb + d * x_sd  # (BB,)
            for t0 in range(0, L, BT):
                pos = t0 + r_own  # (BT,)
                pos_h = t0 - KP + r_halo  # (KP,)
                ok = mask_b[:, None] & (pos < L)[None, :]  # dout at t >= L is zero
                ok_h = mask_b[:, None] & ((pos_h >= 0) & (pos_h < L))[None, :]
                g = tl.load(dout_ptr + rows[:, None] + pos[None, :], mask=ok, other=0.0)  # (BB, BT)
                own = tl.load(x_ptr + x_rows[:, None] + pos[None, :], mask=ok, other=0.0)  # (BB, BT)
                # (BB, KP)
                halo = tl.load(x_ptr + x_rows[:, None] + pos_h[None, :], mask=ok_h, other=0.0)
                g_t = tl.trans(g)  # (BT, BB): the batch rows are the contraction
                acc_own = _mm(g_t, own, acc_own, BF16)  # (BT, BT)
                acc_halo = _mm(g_t, halo, acc_halo, BF16)  # (BT, KP)
        width = KP + BT
        base = (split * D + d).to(tl.int64) * BT * width
        t = tl.arange(0, BT)[:, None]
        tl.store(c_ptr + base + t * width + r_halo[None, :], acc_halo)
        tl.store(c_ptr + base + t * width + KP + r_own[None, :], acc_own)


def triton_available() -> tuple[bool, str]:
    """(True, "") when the kernels are defined, else (False, why)."""
    return triton is not None, _MISSING


def _device_of(t: torch.Tensor):
    """Triton launches on the current CUDA device, so make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()


def _blocks(batch: int, length: int, width: int) -> tuple[int, int, int, int]:
    """(taps that can matter, BB, BT, KP). Taps >= L meet no output, so min(K, L) of them; the
    halo KP >= taps - 1 (the reach of the last tap), all sizes powers of two >= 16 for tl.dot."""
    n_taps = min(width, length)
    block_b = min(MAX_BLOCK_B, max(16, triton.next_power_of_2(batch)))
    block_t = min(MAX_BLOCK_T, max(16, triton.next_power_of_2(length)))
    halo = max(16, triton.next_power_of_2(max(1, n_taps - 1)))
    return n_taps, block_b, block_t, halo


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t (B, D, L) with unit stride along L (a view such as a channel slice of xz), else a copy."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch_conv(src: torch.Tensor, kernel: torch.Tensor, out: torch.Tensor, reverse: bool,
                 bf16: bool, gate: int = 0, bias: torch.Tensor | None = None,
                 dt: torch.Tensor | None = None, ddelta: torch.Tensor | None = None,
                 gate_out: torch.Tensor | None = None) -> None:
    """One _conv_kernel launch over src (B, D, L) with unit stride along L and a contiguous
    kernel (D, K), into contiguous out; the gate's tensors as _gate_epilogue takes them (unused
    pointers get out, which the kernel never reads through them)."""
    batch, dim, length = src.shape
    n_taps, block_b, block_t, halo = _blocks(batch, length, kernel.shape[1])
    dt_, dd_ = (dt if dt is not None else out), (ddelta if ddelta is not None else out)
    grid = (dim, triton.cdiv(batch, block_b))
    with _device_of(src):
        _conv_kernel[grid](src, src.stride(0), src.stride(1), kernel, out, batch, dim, length,
                           kernel.shape[1], n_taps, bias if bias is not None else out,
                           dt_, dt_.stride(0), dt_.stride(1), dd_, dd_.stride(0), dd_.stride(1),
                           gate_out if gate_out is not None else out,
                           REVERSE=reverse, GATE=gate, HAS_BIAS=bias is not None, BF16=bf16,
                           BB=block_b, BT=block_t, KP=halo,
                           num_warps=4 if bf16 else 8)  # fp32 Toeplitz blocks: twice the registers


def _conv(src: torch.Tensor, kernel: torch.Tensor, reverse: bool, bf16: bool) -> torch.Tensor:
    """Causal (or with ``reverse`` anti-causal) depthwise conv of src (B, D, L) with contiguous
    kernel (D, K), fp32 out (B, D, L); bf16 matmul operands when ``bf16``."""
    src = _rows(src)
    out = torch.empty(src.shape, device=src.device, dtype=torch.float32)  # (B, D, L)
    _launch_conv(src, kernel, out, reverse, bf16)
    return out


def _dkernel(dout: torch.Tensor, x: torch.Tensor, width: int, bf16: bool) -> torch.Tensor:
    """fp32 (D, K) kernel gradient from contiguous dout (B, D, L) and x (B, D, L) with unit
    stride along L."""
    batch, dim, length = x.shape
    n_taps, block_b, block_t, halo = _blocks(batch, length, width)
    # Split the batch blocks over programs only as far as D channels leave the GPU idle; the
    # split depends on shapes alone, so the sum order (and result) is deterministic.
    n_split = min(triton.cdiv(batch, block_b), max(1, triton.cdiv(TARGET_PROGRAMS, dim)))
    # (BT, KP + BT) fp32 accumulators: 12288 values at BT = 64, KP = 128, so 8 warps (48 each)
    span = halo + block_t
    c = torch.empty(n_split, dim, block_t, span, device=x.device, dtype=torch.float32)
    with _device_of(x):
        _dkernel_kernel[(dim, n_split)](dout, x, x.stride(0), x.stride(1), c, batch, dim, length,
                                        n_split, BF16=bf16, BB=block_b, BT=block_t, KP=halo,
                                        num_warps=8)
    # Window column r meets output row t at tap j = t + KP - r: tap j's gradient is the sum of
    # diagonal r - t = KP - j. diag[s, d, o, t] = c[s, d, t, t + o] is a view (row step span + 1).
    diag = c.as_strided((n_split, dim, halo + 1, block_t),
                        (dim * block_t * span, block_t * span, 1, span + 1))
    grad = diag.sum(dim=(0, 3)).flip(-1)[:, :n_taps]  # (D, n_taps): column j is offset KP - j
    return torch.nn.functional.pad(grad, (0, width - n_taps))  # taps >= L have zero gradient


def gated_delta(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                dt: torch.Tensor) -> torch.Tensor:
    """Global Selection's delta = dt * SiLU(LongConv(x) + bias), the gate rounded to dt's dtype
    before the product (as ``dt * gate.to(dt.dtype)``), in one pass with no gradient.
    x, dt (B, D, L) with unit stride along L (views of xz and of dt_proj's output are fine),
    kernel (D, K) fp32 in long_conv_direct's tap order, bias (D,) or None -> (B, D, L) in dt's
    dtype, contiguous. Matmul operands in bf16 when x is bf16 (as ``long_conv_triton``)."""
    x, dt = _rows(x), _rows(dt)
    delta = torch.empty(x.shape, device=x.device, dtype=dt.dtype)  # (B, D, L)
    _launch_conv(x, kernel.contiguous(), delta, False, x.dtype == torch.bfloat16, gate=1,
                 bias=bias, dt=dt)
    return delta


def gated_delta_backward(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                         dt: torch.Tensor, ddelta: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None,
                                    torch.Tensor]:
    """Gradients of ``gated_delta`` given ddelta (B, D, L): (dx fp32, dkernel fp32 (D, K),
    dbias fp32 (D,) or None, and the gate (dt's dtype), from which d dt = ddelta * gate), by a
    recomputing pass that also forms dpre = ddelta * dt * SiLU'(pre), then the conv's two
    gradient kernels on dpre."""
    x, dt, ddelta = _rows(x), _rows(dt), _rows(ddelta)
    kernel = kernel.contiguous()
    bf16 = x.dtype == torch.bfloat16
    dpre = torch.empty(x.shape, device=x.device, dtype=torch.float32)  # (B, D, L)
    gate = torch.empty(x.shape, device=x.device, dtype=dt.dtype)  # (B, D, L)
    _launch_conv(x, kernel, dpre, False, bf16, gate=2, bias=bias, dt=dt, ddelta=ddelta,
                 gate_out=gate)
    dx = _conv(dpre, kernel, reverse=True, bf16=bf16)  # (B, D, L) fp32
    dkernel = _dkernel(dpre, x, kernel.shape[1], bf16)  # (D, K)
    dbias = dpre.sum(dim=(0, 2)) if bias is not None else None
    return dx, dkernel, dbias, gate


class LongConvTritonFn(torch.autograd.Function):
    """long_conv_direct's contract on Triton kernels; x and kernel may differ in dtype."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or kernel.dim() != 2 or kernel.shape[0] != x.shape[1]:
            raise ValueError(f"want x (B, D, L) and kernel (D, K), got {tuple(x.shape)} "
                             f"and {tuple(kernel.shape)}")
        x, kernel = _rows(x), kernel.contiguous()  # the kernels index rows of length L, K
        ctx.save_for_backward(x, kernel)
        out = _conv(x, kernel, reverse=False, bf16=x.dtype == torch.bfloat16)  # (B, D, L) fp32
        return out.to(torch.promote_types(x.dtype, torch.float32))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, kernel = ctx.saved_tensors
        dout = dout.contiguous()  # (B, D, L)
        bf16 = x.dtype == torch.bfloat16  # the forward's precision for its gradients too
        dx = dkernel = None
        if ctx.needs_input_grad[0]:
            dx = _conv(dout, kernel, reverse=True, bf16=bf16).to(x.dtype)  # (B, D, L)
        if ctx.needs_input_grad[1]:
            dkernel = _dkernel(dout, x, kernel.shape[1], bf16).to(kernel.dtype)  # (D, K)
        return dx, dkernel


def long_conv_triton(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x (B, D, L), kernel (D, K) -> out (B, D, L) in promote_types(x.dtype, float32), with
    gradients for both; needs Triton (see ``triton_available``) and CUDA tensors, or on CPU
    Triton's interpreter (TRITON_INTERPRET=1 set before triton is first imported)."""
    return LongConvTritonFn.apply(x, kernel)
