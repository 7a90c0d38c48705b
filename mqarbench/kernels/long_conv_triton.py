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
``gated_delta_backward`` recomputes it to write dpre = ddelta * dt * SiLU'(pre) (in the matmul
operands' dtype), d dt = ddelta * gate straight into the caller's layout and the bias gradient's
per-program sums, then runs the kernel-gradient kernel on dpre; ``long_conv_input_grad`` is the
input-gradient kernel, which may add another gradient of x (the short conv's) in its epilogue
and write the sum into a view such as a slice of dxz. Inputs and outputs may be channel slices
or transposed views (rows at b * stride_b + d * stride_d, unit stride along L).

Dtypes: with bf16 x the matmul operands (x, the kernel row, dout) are rounded to bf16, as
nn.Conv1d does under autocast; otherwise they are fp32 with input_precision="ieee" (fp64 inputs
are computed in fp32). Products are always accumulated in fp32 and the output is fp32
(promote_types(x.dtype, float32)); dx has x's dtype and dkernel the kernel's. No atomics: the
kernel gradient's batch split is summed by torch in a fixed order.
"""

from __future__ import annotations

import torch

from mqarbench.kernels.triton_support import launch_device, triton, triton_available  # noqa: F401 - triton_available re-exported

if triton is not None:
    import triton.language as tl

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
    def _block(ptr, b64, d, sb, sd, pos, ok):
        """The (BB, BT) block of a strided (B, D, L) tensor at rows b64, channel d, times pos."""
        return tl.load(ptr + (b64 * sb + d * sd)[:, None] + pos[None, :], mask=ok, other=0.0)

    @triton.jit
    def _epilogue(acc, d, b64, pos, ok, out_ptr, out_sb, out_sd, bias_ptr, dt_ptr, dt_sb, dt_sd,
                  dd_ptr, dd_sb, dd_sd, aux_ptr, aux_sb, aux_sd, MODE: tl.constexpr,
                  HAS_BIAS: tl.constexpr):
        """What a block of the conv, acc (BB, BT) fp32, becomes; returns the block's sum of dpre
        (MODE 2; else 0). MODE 0: out = acc. MODE 3: out = acc + aux (another gradient of the
        same input), summed in fp32. MODE 1 and 2, Global Selection's gate: pre = acc + bias,
        gate = SiLU(pre) rounded to dt's dtype, as the unfused mixer computes it; MODE 1 stores
        delta = dt * gate; MODE 2 stores dpre = ddelta * dt * SiLU'(pre) into out and
        d dt = ddelta * gate (in ddelta's dtype) into aux."""
        out = out_ptr + (b64 * out_sb + d * out_sd)[:, None] + pos[None, :]
        total = 0.0
        if MODE == 0:
            tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=ok)
        elif MODE == 3:
            more = _block(aux_ptr, b64, d, aux_sb, aux_sd, pos, ok).to(tl.float32)
            tl.store(out, (acc + more).to(out_ptr.dtype.element_ty), mask=ok)
        else:
            pre = acc
            if HAS_BIAS:
                pre = pre + tl.load(bias_ptr + d).to(tl.float32)
            sig = tl.sigmoid(pre)
            gate = (pre * sig).to(dt_ptr.dtype.element_ty).to(tl.float32)
            dt = _block(dt_ptr, b64, d, dt_sb, dt_sd, pos, ok).to(tl.float32)  # (BB, BT)
            if MODE == 1:
                tl.store(out, (dt * gate).to(out_ptr.dtype.element_ty), mask=ok)
            else:
                dd = _block(dd_ptr, b64, d, dd_sb, dd_sd, pos, ok).to(tl.float32)
                ddt = aux_ptr + (b64 * aux_sb + d * aux_sd)[:, None] + pos[None, :]
                tl.store(ddt, (dd * gate).to(aux_ptr.dtype.element_ty), mask=ok)
                dpre = dd * dt * (sig * (1.0 + pre * (1.0 - sig)))  # SiLU'(pre) = s (1 + pre (1 - s))
                dpre = tl.where(ok, dpre, 0.0)
                tl.store(out, dpre.to(out_ptr.dtype.element_ty), mask=ok)
                total = tl.sum(tl.sum(dpre, axis=1), axis=0)
        return total

    @triton.jit
    def _conv_kernel(src_ptr, src_sb, src_sd, w_ptr, out_ptr, out_sb, out_sd, B, D, L, K, N_TAPS,
                     bias_ptr, dt_ptr, dt_sb, dt_sd, dd_ptr, dd_sb, dd_sd, aux_ptr, aux_sb, aux_sd,
                     part_ptr, REVERSE: tl.constexpr, MODE: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BF16: tl.constexpr, BB: tl.constexpr, BT: tl.constexpr, KP: tl.constexpr):
        """out[b, d, t] = sum_{j < N_TAPS} w[d, j] * src[b, d, t - j] (causal; forward) or
        src[b, d, t + j] (anti-causal; REVERSE, the input gradient), through _epilogue's MODE.
        One program: channel d, BB batch rows, every time block; in MODE 2 it stores its sum of
        dpre at part[pid_b, d]. The window of a block starting at t0 is its own BT positions plus
        a halo of KP: before it (t0 - KP..) causal, after it (t0 + BT..) reversed; two dots (own,
        halo) keep both widths powers of two. Every tensor's rows (b, d) start at b sb + d sd
        with unit stride along L, so channel slices and transposed views need no copy."""
        d, pid_b = tl.program_id(0), tl.program_id(1)
        offs_b = pid_b * BB + tl.arange(0, BB)  # (BB,)
        mask_b = offs_b < B
        b64 = offs_b.to(tl.int64)  # B D L may pass 2^31
        src_rows = b64 * src_sb + d * src_sd  # (BB,)
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
        total = 0.0
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
            total += _epilogue(acc, d, b64, pos, ok, out_ptr, out_sb, out_sd, bias_ptr, dt_ptr,
                               dt_sb, dt_sd, dd_ptr, dd_sb, dd_sd, aux_ptr, aux_sb, aux_sd, MODE,
                               HAS_BIAS)
        if MODE == 2:
            tl.store(part_ptr + pid_b * D + d, total)

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


# _conv_kernel's epilogues (see _epilogue)
CONV, DELTA, DELTA_BACKWARD, CONV_PLUS = 0, 1, 2, 3


def _launch_conv(src: torch.Tensor, kernel: torch.Tensor, out: torch.Tensor, reverse: bool,
                 bf16: bool, mode: int = CONV, bias: torch.Tensor | None = None,
                 dt: torch.Tensor | None = None, ddelta: torch.Tensor | None = None,
                 aux: torch.Tensor | None = None, part: torch.Tensor | None = None) -> None:
    """One _conv_kernel launch over src (B, D, L) into out (B, D, L), both with unit stride along
    L, and a contiguous kernel (D, K); the epilogue's tensors as _epilogue takes them (unused
    pointers get out, which the kernel never reads or writes through them)."""
    batch, dim, length = src.shape
    n_taps, block_b, block_t, halo = _blocks(batch, length, kernel.shape[1])
    dt_, dd_, aux_ = (t if t is not None else out for t in (dt, ddelta, aux))
    grid = (dim, triton.cdiv(batch, block_b))
    with launch_device(src):
        _conv_kernel[grid](src, src.stride(0), src.stride(1), kernel, out, out.stride(0),
                           out.stride(1), batch, dim, length, kernel.shape[1], n_taps,
                           bias if bias is not None else out, dt_, dt_.stride(0), dt_.stride(1),
                           dd_, dd_.stride(0), dd_.stride(1), aux_, aux_.stride(0), aux_.stride(1),
                           part if part is not None else out,
                           REVERSE=reverse, MODE=mode, HAS_BIAS=bias is not None, BF16=bf16,
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
    with launch_device(x):
        _dkernel_kernel[(dim, n_split)](dout, x, x.stride(0), x.stride(1), c, batch, dim, length,
                                        n_split, BF16=bf16, BB=block_b, BT=block_t, KP=halo,
                                        num_warps=8)
    # Window column r meets output row t at tap j = t + KP - r: tap j's gradient is the sum of
    # diagonal r - t = KP - j. diag[s, d, o, t] = c[s, d, t, t + o] is a view (row step span + 1).
    diag = c.as_strided((n_split, dim, halo + 1, block_t),
                        (dim * block_t * span, block_t * span, 1, span + 1))
    grad = diag.sum(dim=(0, 3)).flip(-1)[:, :n_taps]  # (D, n_taps): column j is offset KP - j
    return torch.nn.functional.pad(grad, (0, width - n_taps))  # taps >= L have zero gradient


def _unit_stride(t: torch.Tensor, name: str) -> torch.Tensor:
    """An output view the kernels may write through: (B, D, L) with unit stride along L."""
    if t.dim() != 3 or t.stride(-1) != 1:
        raise ValueError(f"{name} must be (B, D, L) with unit stride along L, got shape "
                         f"{tuple(t.shape)} strides {t.stride()}")
    return t


def gated_delta(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                dt: torch.Tensor) -> torch.Tensor:
    """Global Selection's delta = dt * SiLU(LongConv(x) + bias), the gate rounded to dt's dtype
    before the product (as ``dt * gate.to(dt.dtype)``), in one pass with no gradient.
    x, dt (B, D, L) with unit stride along L (views of xz and of dt_proj's output are fine),
    kernel (D, K) fp32 in long_conv_direct's tap order, bias (D,) or None -> (B, D, L) in dt's
    dtype, contiguous. Matmul operands in bf16 when x is bf16 (as ``long_conv_triton``)."""
    x, dt = _rows(x), _rows(dt)
    delta = torch.empty(x.shape, device=x.device, dtype=dt.dtype)  # (B, D, L)
    _launch_conv(x, kernel.contiguous(), delta, False, x.dtype == torch.bfloat16, DELTA,
                 bias=bias, dt=dt)
    return delta


def gated_delta_backward(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                         dt: torch.Tensor, ddelta: torch.Tensor, ddt_out: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Gradients of ``gated_delta`` given ddelta (B, D, L), but for x's:
    (dpre, dkernel fp32 (D, K), dbias fp32 (D,) or None, ddt). One recomputing pass writes
    dpre = ddelta * dt * SiLU'(pre), the gradient at the conv's output, in the dtype the conv's
    gradient kernels round their operands to (bf16 for bf16 x, else fp32; the bias gradient is
    summed from the fp32 values, per program, in a fixed order), and d dt = ddelta * gate in
    ddelta's dtype, into ``ddt_out`` when given (any (B, D, L) view with unit stride along L,
    e.g. the transpose of a (D, B, L) buffer) or a new tensor. x's gradient is
    ``long_conv_input_grad(dpre, kernel)``."""
    x, dt, ddelta = _rows(x), _rows(dt), _rows(ddelta)
    kernel = kernel.contiguous()
    bf16 = x.dtype == torch.bfloat16
    dpre = torch.empty(x.shape, device=x.device,
                       dtype=torch.bfloat16 if bf16 else torch.float32)  # (B, D, L)
    if ddt_out is None:
        ddt_out = torch.empty(x.shape, device=x.device, dtype=ddelta.dtype)  # (B, D, L)
    _unit_stride(ddt_out, "ddt_out")
    _, block_b, _, _ = _blocks(x.shape[0], x.shape[2], kernel.shape[1])
    part = torch.empty(triton.cdiv(x.shape[0], block_b), x.shape[1], device=x.device,
                       dtype=torch.float32)  # (batch blocks, D): each program's sum of dpre
    _launch_conv(x, kernel, dpre, False, bf16, DELTA_BACKWARD, bias=bias, dt=dt, ddelta=ddelta,
                 aux=ddt_out, part=part)
    dkernel = _dkernel(dpre, x, kernel.shape[1], bf16)  # (D, K)
    dbias = part.sum(dim=0) if bias is not None else None
    return dpre, dkernel, dbias, ddt_out


def long_conv_input_grad(dout: torch.Tensor, kernel: torch.Tensor, add: torch.Tensor | None = None,
                         out: torch.Tensor | None = None) -> torch.Tensor:
    """x's gradient of the long conv given dout (B, D, L) (e.g. ``gated_delta_backward``'s
    dpre), plus ``add`` (another gradient of x, summed in fp32) when given, written into ``out``
    (a (B, D, L) view with unit stride along L, e.g. a channel slice of dxz; in its dtype) or a
    new fp32 tensor. Matmul operands in bf16 when dout is bf16."""
    dout, kernel = _rows(dout), kernel.contiguous()
    if out is None:
        out = torch.empty(dout.shape, device=dout.device, dtype=torch.float32)  # (B, D, L)
    _unit_stride(out, "out")
    mode = CONV if add is None else CONV_PLUS
    _launch_conv(dout, kernel, out, True, dout.dtype == torch.bfloat16, mode,
                 aux=None if add is None else _rows(add))
    return out


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
