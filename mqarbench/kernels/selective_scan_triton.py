"""Mamba's selective scan in Triton: forward and backward, deterministic (no atomics).

The contract of ``selective_scan_ref`` and of mamba_ssm's ``selective_scan_fn``: u, delta, z
(batch, D, L); A (D, N); B, C (batch, N, L); D, delta_bias (D,). Per channel d and state n,
    delta'_t = softplus(delta_t + delta_bias)   (softplus and bias each optional)
    h_t = a_t h_{t-1} + b_t,   a_t = exp(delta'_t A),   b_t = delta'_t B_t u_t,   h_{-1} = 0
    y_t = sum_n C_{n,t} h_{t,n} + D u_t,   out = y * silu(z)   (or y without z)

Why not mamba_ssm's kernel: its backward adds every channel's dB and dC into one (batch, N, L)
buffer with atomics (256-way contention at ``small``, 64 x 256 x 16 x 256, where it takes ~375 us
on an H200, the largest kernel of a Mamba training step), and its sums land in a different order
on every call, so its gradients are not reproducible.

Chunking: a program owns one batch row and BLOCK_D channels (or a few such blocks, one after
another: _blocks_per_program) and walks L in chunks of BLOCK_T steps. A chunk is a (BLOCK_T,
BLOCK_N, BLOCK_D) fp32 register tile (BLOCK_N: N rounded up to a power of two, masked), time
first so that each thread holds whole chunks of time; its recurrence is one
``tl.associative_scan`` over time with the combine (a1, b1), (a2, b2) -> (a1 a2, b1 a2 + b2),
which gives each step's state from a zero start and its cumulative decay P_t; h_t = that state
+ P_t h_in, h_in carried from the chunk before. Steps past L have delta' = 0 and u = 0: they
leave the state alone, so a chunk's last row is its carry.

The forward saves the state entering every STATE_EVERY-th chunk, (batch, n_saved, D, N) fp32,
and nothing per step (nor these when no backward can follow). The backward walks those spans of
chunks in reverse. For each span it runs the forward once more from the saved state to find each
chunk's entering state (kept in a small per-program scratch buffer; with STATE_EVERY = 1 the
saved state is the chunk's), then walks the span's chunks in reverse: it recomputes a chunk's
states and solves the adjoint recurrence
    g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1}
as a scan over the time-flipped chunk, carrying a_0 g_0 of each chunk into the chunk before it.
From g (with a_t h_{t-1} = h_t - b_t, so h_{t-1} is never needed):
    d delta'_t = sum_n g (A (h - b) + B u),   du_t = sum_n g delta' B + D dy,
    dB_{n,t} = sum_d g delta' u,   dC_{n,t} = sum_d h dy,   dA = sum_{batch,t} g (h - b) delta',
    dD = sum_{batch,t} dy u,   dz = dout y silu'(z),   and through softplus d delta = d delta' sigmoid.

Determinism: no atomics anywhere; every value is written by one program, in a fixed order. A
backward program walks a few channel blocks one after another and adds their dB and dC into its
own partial, (n_groups, batch, N, L); dA, dD and d delta_bias are written per batch row; torch
sums the partials over their first axis afterwards. Two calls give bit-identical gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mqarbench.kernels.triton_support import launch_device, triton


@dataclass(frozen=True)
class Tiles:
    """Tile sizes for one BLOCK_N, shared by both passes where the backward retraces the forward."""

    block_t: int  # steps per chunk (a power of two)
    state_every: int  # chunks per saved state: the saved states take batch D N L / (block_t
    # state_every) fp32; above 1 the backward runs the forward once more to find the others
    fwd_block_d: int  # channels per forward program
    fwd_warps: int
    bwd_block_d: int  # channels per backward program: fewer programs, fewer dB/dC partials
    bwd_warps: int


# BLOCK_N -> tiles. Triton's default layout spreads a warp's lanes over a tile's trailing axes
# first: channels (up to BLOCK_D lanes), then states; time, the first axis, stays inside
# threads, so the scans need no shuffles. One warp a program keeps the sums over states (y, du,
# d delta) within a warp. The lanes that share a channel all repeat its (step, channel) work
# (loads, softplus), the lanes that share a state all take part in the sums over channels (dB,
# dC): the backward's 8 channel lanes x 4 state lanes (N = 16) balance the two; the forward has
# no channel sums and takes 16 x 2. block_t is as long as the backward's registers allow (it
# keeps about a dozen live tiles of block_t x BLOCK_N x BLOCK_D / 32 values a thread);
# state_every keeps the saved states near two fp32 copies of u. Chosen from the compiled
# kernels' instruction counts and registers on sm_90, untimed: tune with
# benchmarks/bench_scan.py --tiles.
TILES = {
    2: Tiles(8, 1, 16, 1, 16, 1),
    4: Tiles(8, 1, 16, 1, 16, 1),
    8: Tiles(8, 1, 16, 1, 8, 1),
    16: Tiles(8, 1, 16, 1, 8, 1),
    32: Tiles(4, 4, 16, 1, 8, 1),
    64: Tiles(2, 16, 8, 1, 4, 1),
}


WARPS_PER_SM = 8  # resident at 255 registers a thread (the backward's); see _blocks_per_program


def _block_n(n_state: int) -> int:
    """N rounded up to a power of two (at least 2), masked inside the kernels."""
    return max(2, 1 << (n_state - 1).bit_length())


def tiles_for(n_state: int) -> Tiles:
    """The default tiles for N states (N > 64: the N = 64 tiles with BLOCK_D shrunk to match)."""
    block_n = _block_n(n_state)
    if block_n in TILES:
        return TILES[block_n]
    base, shrink = TILES[64], block_n // 64
    return Tiles(base.block_t, base.state_every, max(1, base.fwd_block_d // shrink), base.fwd_warps,
                 max(1, base.bwd_block_d // shrink), base.bwd_warps)


if triton is not None:
    import triton.language as tl

    @triton.jit
    def _first_order(a1, b1, a2, b2):
        """Compose h -> a1 h + b1, then h -> a2 h + b2 (earlier step first)."""
        return a1 * a2, b1 * a2 + b2

    @triton.jit
    def _adjoint_runs(m1, k1, a1, m2, k2, a2):
        """Join two runs of steps, the later in time first. A run from step i back to step j
        (i >= j) maps k_in = a_{i+1} g_{i+1}, what enters it from the step after, to
        g_j = m k_in + k; a = a_j sends g_j on (a_j g_j enters the run before it)."""
        lead = m2 * a1
        return m1 * lead, lead * k1 + k2, a2

    @triton.jit
    def _softplus(x):
        """log(1 + exp(x)) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], log1p(e) = e q(e) with
        q a degree-8 fit of log1p(e) / e on [0, 1] (relative error 3e-8; 2e-7 once rounded to fp32).
        Nine FMAs where tl.log takes about forty instructions: a (step, channel) value like this
        one is computed by every thread that holds states of that channel."""
        e = tl.exp(-tl.abs(x))
        q = 0.0052326913 * e - 0.029505227
        q = q * e + 0.07822593
        q = q * e - 0.13663244
        q = q * e + 0.19106007
        q = q * e - 0.24842982
        q = q * e + 0.33319098
        q = q * e - 0.49999493
        q = q * e + 0.99999994
        return tl.maximum(x, 0.0) + e * q

    @triton.jit
    def _chunk_inputs(u, delta, B, dl, nl, t, length, chan_ok, n_ok, bias,
                      HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
        """A chunk's offsets into (batch, D, L) rows, its masks, u and delta' (BLOCK_T, BLOCK_D),
        delta + bias (before softplus) and B (BLOCK_T, BLOCK_N), all fp32. delta' = 0 on padded
        steps, which makes their decay 1 and their input 0: they leave the state alone."""
        ok = (t < length)[:, None] & chan_ok[None, :]  # (BLOCK_T, BLOCK_D)
        at = dl + t[:, None]
        uu = tl.load(u + at, mask=ok, other=0.0).to(tl.float32)
        pre = tl.load(delta + at, mask=ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            pre += bias[None, :]
        dt = pre
        if SOFTPLUS:
            dt = _softplus(pre)
        dt = tl.where(ok, dt, 0.0)
        b = tl.load(B + nl + t[:, None], mask=(t < length)[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
        return at, ok, uu, dt, pre, b

    @triton.jit
    def _chunk_states(dt, u, a_log2, b, h0):
        """The chunk's states (BLOCK_T, BLOCK_N, BLOCK_D) from the state h0 (BLOCK_N, BLOCK_D)
        entering it, its inputs delta' B u and its decays exp(delta' A). dt, u (BLOCK_T, BLOCK_D);
        a_log2 is A^T log2(e) (BLOCK_N, BLOCK_D), so exp is one exp2; b is B^T (BLOCK_T, BLOCK_N)."""
        decay = tl.exp2(dt[:, None, :] * a_log2[None, :, :])
        drive = b[:, :, None] * (dt * u)[:, None, :]
        cum, h = tl.associative_scan((decay, drive), 0, _first_order)
        return h + cum * h0[None, :, :], drive, decay

    @triton.jit
    def _adjoint(decay, c, k_in):
        """g (BLOCK_T, BLOCK_N, BLOCK_D) with g_t = c_t + a_{t+1} g_{t+1}, a = decay, where a g of
        the step after the chunk is k_in (BLOCK_N, BLOCK_D). Each run carries its earliest decay
        (_adjoint_runs), so no delta'_{t+1} is needed. A forward scan of the time-flipped tiles:
        flipping the time axis, which lies inside threads, only renames registers, while Triton
        3.6 lowers reverse=True with lane shuffles that reverse the warp around the scan."""
        m, k, _ = tl.associative_scan((tl.full(c.shape, 1.0, tl.float32), tl.flip(c, 0), tl.flip(decay, 0)),
                                      0, _adjoint_runs)
        return tl.flip(m, 0) * k_in[None, :, :] + tl.flip(k, 0)

    @triton.jit
    def _at_step(x, steps, step):
        """x[step] of a (BLOCK_T, BLOCK_N, BLOCK_D) tile, as (BLOCK_N, BLOCK_D)."""
        return tl.sum(tl.where(steps[:, None, None] == step, x, 0.0), axis=0)

    @triton.jit
    def _scan_fwd(u, delta, A, B, C, Dskip, z, bias, out, states,
                  dim, n_state, length, n_chunks, n_blocks, per_program,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                  SOFTPLUS: tl.constexpr, STATE_EVERY: tl.constexpr, SAVE: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
        """One batch row and ``per_program`` blocks of BLOCK_D channels, one block after another,
        each walking the chunks in order: out, and (SAVE) the state entering every STATE_EVERY-th
        chunk into states (batch, n_saved, D, N). u, delta, z, out (batch, D, L) and B, C (batch,
        N, L) contiguous; A (D, N)."""
        row = tl.program_id(0).to(tl.int64)
        group = tl.program_id(1)
        ns = tl.arange(0, BLOCK_N)
        steps = tl.arange(0, BLOCK_T)
        n_ok = ns < n_state
        nl = (row * n_state + ns[None, :]) * length  # (1, BLOCK_N) row starts in (batch, N, L)
        for member in range(tl.minimum(per_program, n_blocks - group * per_program)):
            chans = (group * per_program + member) * BLOCK_D + tl.arange(0, BLOCK_D)
            chan_ok = chans < dim
            nd_ok = n_ok[:, None] & chan_ok[None, :]  # (BLOCK_N, BLOCK_D)
            nd_at = chans[None, :] * n_state + ns[:, None]  # into (D, N)
            a_log2 = tl.load(A + nd_at, mask=nd_ok, other=0.0).to(tl.float32) * 1.4426950408889634  # log2(e)
            bias_v = tl.load(bias + chans, mask=chan_ok, other=0.0).to(tl.float32) if HAS_BIAS else None
            d_v = tl.load(Dskip + chans, mask=chan_ok, other=0.0).to(tl.float32) if HAS_D else None
            dl = (row * dim + chans[None, :]) * length  # (1, BLOCK_D) row starts in (batch, D, L)
            saved = states + row * tl.cdiv(n_chunks, STATE_EVERY) * dim * n_state + nd_at
            h = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
            for chunk in range(n_chunks):
                if SAVE:
                    tl.store(saved + (chunk // STATE_EVERY) * dim * n_state, h,
                             mask=nd_ok & (chunk % STATE_EVERY == 0))
                t = chunk * BLOCK_T + steps
                at, ok, uu, dt, _, b = _chunk_inputs(u, delta, B, dl, nl, t, length, chan_ok, n_ok, bias_v,
                                                     HAS_BIAS, SOFTPLUS)
                c = tl.load(C + nl + t[:, None], mask=(t < length)[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
                hs, _, _ = _chunk_states(dt, uu, a_log2, b, h)
                y = tl.sum(hs * c[:, :, None], axis=1)  # (BLOCK_T, BLOCK_D)
                if HAS_D:
                    y += d_v[None, :] * uu
                if HAS_Z:
                    zz = tl.load(z + at, mask=ok, other=0.0).to(tl.float32)
                    y = y * zz * tl.sigmoid(zz)
                tl.store(out + at, y.to(out.dtype.element_ty), mask=ok)
                h = _at_step(hs, steps, BLOCK_T - 1)

    @triton.jit
    def _add_part(ptr, value, mask, member):
        """Store the program's first channel block's partial sum, add a later block's to it."""
        tl.store(ptr, tl.load(ptr, mask=mask & (member > 0), other=0.0) + value, mask=mask)

    @triton.jit
    def _scan_bwd(u, delta, A, B, C, Dskip, z, bias, dout, states, scratch,
                  du, ddelta, dz, db_part, dc_part, da_part, dd_part, dbias_part,
                  batch, dim, n_state, length, n_chunks, n_blocks, per_program,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                  SOFTPLUS: tl.constexpr, STATE_EVERY: tl.constexpr, BLOCK_D: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
        """One batch row and ``per_program`` blocks of BLOCK_D channels, one block after another,
        each walking the chunks in reverse: du, ddelta, dz (the row's own); the blocks' dB, dC
        summed in block order into this program's rows of db_part, dc_part (n_groups, batch, N,
        L); the row's dA, dD, d delta_bias into da_part (batch, D, N), dd_part, dbias_part (batch,
        D). scratch (programs, STATE_EVERY, BLOCK_N, BLOCK_D) holds a span's chunk-entering states."""
        row = tl.program_id(0).to(tl.int64)
        group = tl.program_id(1)
        ns = tl.arange(0, BLOCK_N)
        steps = tl.arange(0, BLOCK_T)
        n_ok = ns < n_state
        nl = (row * n_state + ns[None, :]) * length  # (1, BLOCK_N)
        part_nl = ((group * batch + row) * n_state + ns[None, :]) * length  # (1, BLOCK_N)
        n_spans = tl.cdiv(n_chunks, STATE_EVERY)
        kept = (scratch + (row * tl.num_programs(1) + group) * STATE_EVERY * BLOCK_N * BLOCK_D
                + ns[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :])  # (BLOCK_N, BLOCK_D)
        for member in range(tl.minimum(per_program, n_blocks - group * per_program)):
            chans = (group * per_program + member) * BLOCK_D + tl.arange(0, BLOCK_D)
            chan_ok = chans < dim
            nd_ok = n_ok[:, None] & chan_ok[None, :]  # (BLOCK_N, BLOCK_D)
            nd_at = chans[None, :] * n_state + ns[:, None]
            a_log = tl.load(A + nd_at, mask=nd_ok, other=0.0).to(tl.float32)
            a_log2 = a_log * 1.4426950408889634  # log2(e)
            bias_v = tl.load(bias + chans, mask=chan_ok, other=0.0).to(tl.float32) if HAS_BIAS else None
            d_v = tl.load(Dskip + chans, mask=chan_ok, other=0.0).to(tl.float32) if HAS_D else None
            dl = (row * dim + chans[None, :]) * length  # (1, BLOCK_D)
            saved = states + row * n_spans * dim * n_state + nd_at
            k_next = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)  # a g at the later chunk's first step
            da_acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
            dd_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
            dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
            for back_span in range(n_spans):
                span = n_spans - 1 - back_span
                first = span * STATE_EVERY
                count = tl.minimum(STATE_EVERY, n_chunks - first)
                h = tl.load(saved + span * dim * n_state, mask=nd_ok, other=0.0)
                if STATE_EVERY > 1:  # the forward once more: the span's chunk-entering states
                    for j in range(count):
                        tl.store(kept + j * BLOCK_N * BLOCK_D, h)
                        t = (first + j) * BLOCK_T + steps
                        _, _, uu, dt, _, b = _chunk_inputs(u, delta, B, dl, nl, t, length, chan_ok, n_ok,
                                                           bias_v, HAS_BIAS, SOFTPLUS)
                        hs, _, _ = _chunk_states(dt, uu, a_log2, b, h)
                        h = _at_step(hs, steps, BLOCK_T - 1)
                    tl.debug_barrier()  # other threads read what each stored
                for back in range(count):
                    j = count - 1 - back
                    t = (first + j) * BLOCK_T + steps
                    h0 = h
                    if STATE_EVERY > 1:
                        h0 = tl.load(kept + j * BLOCK_N * BLOCK_D)
                    at, ok, uu, dt, pre, b = _chunk_inputs(u, delta, B, dl, nl, t, length, chan_ok, n_ok,
                                                           bias_v, HAS_BIAS, SOFTPLUS)
                    bc_ok = (t < length)[:, None] & n_ok[None, :]  # (BLOCK_T, BLOCK_N)
                    c = tl.load(C + nl + t[:, None], mask=bc_ok, other=0.0).to(tl.float32)
                    hs, drive, decay = _chunk_states(dt, uu, a_log2, b, h0)  # (BLOCK_T, BLOCK_N, BLOCK_D)
                    dy = tl.load(dout + at, mask=ok, other=0.0).to(tl.float32)  # (BLOCK_T, BLOCK_D)
                    if HAS_Z:
                        zz = tl.load(z + at, mask=ok, other=0.0).to(tl.float32)
                        sig = tl.sigmoid(zz)
                        y = tl.sum(hs * c[:, :, None], axis=1)
                        if HAS_D:
                            y += d_v[None, :] * uu
                        # silu'(z) = sig (1 + z (1 - sig))
                        dz_v = dy * y * sig * (1.0 + zz * (1.0 - sig))
                        tl.store(dz + at, dz_v.to(dz.dtype.element_ty), mask=ok)
                        dy = dy * zz * sig
                    g = _adjoint(decay, c[:, :, None] * dy[:, None, :], k_next)  # (BLOCK_T, BLOCK_N, BLOCK_D)
                    k_next = _at_step(decay * g, steps, 0)
                    prev = hs - drive  # a_t h_{t-1}
                    gb = tl.sum(g * b[:, :, None], axis=1)  # (BLOCK_T, BLOCK_D): sum_n g B
                    ddt = tl.sum(g * prev * a_log[None, :, :], axis=1) + gb * uu
                    du_v = gb * dt
                    if HAS_D:
                        du_v += d_v[None, :] * dy
                        dd_acc += tl.sum(dy * uu, axis=0)
                    tl.store(du + at, du_v.to(du.dtype.element_ty), mask=ok)
                    da_acc += tl.sum(g * prev * dt[:, None, :], axis=0)
                    if SOFTPLUS:
                        ddt = ddt * tl.sigmoid(pre)
                    ddt = tl.where(ok, ddt, 0.0)
                    tl.store(ddelta + at, ddt.to(ddelta.dtype.element_ty), mask=ok)
                    dbias_acc += tl.sum(ddt, axis=0)
                    at_part = part_nl + t[:, None]
                    _add_part(db_part + at_part, tl.sum(g * (dt * uu)[:, None, :], axis=2), bc_ok, member)
                    _add_part(dc_part + at_part, tl.sum(hs * dy[:, None, :], axis=2), bc_ok, member)
                if STATE_EVERY > 1:
                    tl.debug_barrier()  # the next span's pass rewrites scratch
            tl.store(da_part + row * dim * n_state + nd_at, da_acc, mask=nd_ok)
            tl.store(dd_part + row * dim + chans, dd_acc, mask=chan_ok)
            tl.store(dbias_part + row * dim + chans, dbias_acc, mask=chan_ok)
            tl.debug_barrier()  # the next block adds to the partials other threads stored


def _check(name: str, t: torch.Tensor | None, shapes: list[tuple[int, ...]], accepted: str) -> None:
    if t is not None and tuple(t.shape) not in shapes:
        raise ValueError(f"selective_scan_triton: {name} has shape {tuple(t.shape)}; accepted: {accepted}")


def _validate(u, delta, A, B, C, D, z, delta_bias) -> tuple[torch.Tensor, torch.Tensor]:
    """B and C as (batch, N, L) (a (batch, 1, N, L) squeezed); ValueError on any other shape."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan_triton: u has shape {tuple(u.shape)}; accepted: (batch, D, L)")
    batch, dim, length = u.shape
    _check("delta", delta, [(batch, dim, length)], f"(batch, D, L) = {(batch, dim, length)}")
    _check("z", z, [(batch, dim, length)], f"(batch, D, L) = {(batch, dim, length)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan_triton: A has shape {tuple(A.shape)}; accepted: (D, N) with D = {dim}")
    n_state = A.shape[1]
    bc = [(batch, n_state, length), (batch, 1, n_state, length)]
    accepted = f"(batch, N, L) = {bc[0]} or (batch, 1, N, L) = {bc[1]}"
    _check("B", B, bc, accepted)
    _check("C", C, bc, accepted)
    _check("D", D, [(dim,)], f"(D,) = {(dim,)}")
    _check("delta_bias", delta_bias, [(dim,)], f"(D,) = {(dim,)}")
    squeeze = lambda t: t.squeeze(1) if t.dim() == 4 else t  # noqa: E731
    return squeeze(B), squeeze(C)


def _blocks_per_program(batch: int, blocks: int, warps: int, device: torch.device) -> int:
    """Channel blocks a program walks one after another: about as many as leave one wave of
    programs, WARPS_PER_SM warps resident on each SM. A program walks all of L, so a second,
    part-filled wave would cost nearly as long as the first. In the backward each program also
    adds its blocks' dB and dC into one partial, which divides their traffic (at paper, 192
    blocks of 8 channels would write 0.8 GB of them)."""
    if device.type != "cuda":  # Triton's interpreter (the tests): one block a program, or two
        return 2 if blocks > 2 else 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(blocks, round(batch * blocks / (sms * max(1, WARPS_PER_SM // warps)))))


def _flags(D, z, delta_bias, softplus: bool, tiles: Tiles, block_d: int, n_state: int, warps: int) -> dict:
    return dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
                STATE_EVERY=tiles.state_every, BLOCK_D=block_d, BLOCK_N=_block_n(n_state),
                BLOCK_T=tiles.block_t, num_warps=warps)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, tiles, save):
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        z = None if z is None else z.contiguous()
        batch, dim, length = u.shape
        n_state = A.shape[1]
        n_chunks = triton.cdiv(length, tiles.block_t)
        out = torch.empty_like(u)  # (batch, D, L) in u's dtype
        saved = (batch, triton.cdiv(n_chunks, tiles.state_every), dim, n_state) if save else (1,)
        states = torch.empty(saved, device=u.device, dtype=torch.float32)
        blocks = triton.cdiv(dim, tiles.fwd_block_d)
        per_program = _blocks_per_program(batch, blocks, tiles.fwd_warps, u.device)
        with launch_device(u):
            _scan_fwd[(batch, triton.cdiv(blocks, per_program))](
                u, delta, A, B, C, u if D is None else D, u if z is None else z,
                u if delta_bias is None else delta_bias, out, states, dim, n_state, length, n_chunks,
                blocks, per_program, SAVE=save,
                **_flags(D, z, delta_bias, delta_softplus, tiles, tiles.fwd_block_d, n_state, tiles.fwd_warps))
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.meta = (delta_softplus, tiles)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        softplus, tiles = ctx.meta
        batch, dim, length = u.shape
        n_state = A.shape[1]
        blocks = triton.cdiv(dim, tiles.bwd_block_d)
        per_program = _blocks_per_program(batch, blocks, tiles.bwd_warps, u.device)
        groups = triton.cdiv(blocks, per_program)
        f32 = dict(device=u.device, dtype=torch.float32)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = None if z is None else torch.empty_like(z)
        db_part = torch.empty(groups, batch, n_state, length, **f32)  # per program's channel blocks
        dc_part = torch.empty(groups, batch, n_state, length, **f32)
        da_part = torch.empty(batch, dim, n_state, **f32)  # per batch row
        dd_part, dbias_part = torch.empty(batch, dim, **f32), torch.empty(batch, dim, **f32)
        scratch = torch.empty(batch * groups * tiles.state_every * _block_n(n_state) * tiles.bwd_block_d
                              if tiles.state_every > 1 else 1, **f32)
        with launch_device(u):
            _scan_bwd[(batch, groups)](
                u, delta, A, B, C, u if D is None else D, u if z is None else z,
                u if delta_bias is None else delta_bias, dout.contiguous(), states, scratch,
                du, ddelta, du if dz is None else dz, db_part, dc_part, da_part, dd_part, dbias_part,
                batch, dim, n_state, length, triton.cdiv(length, tiles.block_t), blocks, per_program,
                **_flags(D, z, delta_bias, softplus, tiles, tiles.bwd_block_d, n_state, tiles.bwd_warps))
        need = ctx.needs_input_grad
        total = lambda part, like, i: part.sum(0).to(like.dtype) if need[i] else None  # noqa: E731 - fixed order
        return (du, ddelta, total(da_part, A, 2), total(db_part, B, 3), total(dc_part, C, 4),
                None if D is None else total(dd_part, D, 5), dz,
                None if delta_bias is None else total(dbias_part, delta_bias, 7), None, None, None)


def selective_scan_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                          delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                          tiles: Tiles | None = None) -> torch.Tensor:
    """out (batch, D, L) in u's dtype: the selective scan of the module docstring. u, delta, z
    (batch, D, L); A (D, N); B, C (batch, N, L) or (batch, 1, N, L); D, delta_bias (D,);
    ``tiles`` overrides ``tiles_for(N)`` (tuning)."""
    B, C = _validate(u, delta, A, B, C, D, z, delta_bias)
    tiles = tiles_for(A.shape[1]) if tiles is None else tiles
    # the states are for the backward: none without one (no_grad, or no input needing a gradient)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                           for t in (u, delta, A, B, C, D, z, delta_bias))
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, tiles, save)
