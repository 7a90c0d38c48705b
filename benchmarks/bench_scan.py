"""Selective scan speed on CUDA: mamba_ssm's selective_scan_fn against selective_scan_triton.

    python benchmarks/bench_scan.py                            # batch 64, D 256, N 16/32/64, L 64/128/256
    python benchmarks/bench_scan.py --paper                    # batch 64, D 1536, N 16, L 512
    python benchmarks/bench_scan.py --shapes 64x256x16x256,8x512x64x1024
    python benchmarks/bench_scan.py --shapes 64x256x16x256 --tiles 8,1,16,1,8,1 --tiles 4,1,16,1,8,1

Called as Mamba calls it: delta_softplus, delta_bias, D and z given; u, delta, z, B, C in bf16
(B and C come out of x_proj under autocast); A, D, delta_bias fp32. Forward alone runs under
no_grad (so the Triton forward saves no states); forward + backward takes the gradients of every
input. Each time is the median of
--reps calls timed with CUDA events after --warmup calls, in microseconds. --tiles (block_t,
state_every, fwd_block_d, fwd_warps, bwd_block_d, bwd_warps; repeatable) times the Triton kernels
with those tiles instead of tiles_for(N), one row each. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch

from mqarbench.kernels.selective_scan import selective_scan_fn
from mqarbench.kernels.selective_scan_triton import Tiles, selective_scan_triton, tiles_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_helpers import cuda_ms  # noqa: E402 - a sibling module

SMALL = [(64, 256, n, length) for n in (16, 32, 64) for length in (64, 128, 256)]
PAPER = [(64, 1536, 16, 512)]


def inputs(batch: int, dim: int, n_state: int, length: int) -> list[torch.Tensor]:
    """u, delta, A, B, C, D, z, delta_bias at Mamba's scales, each requiring grad."""
    cuda, bf16 = dict(device="cuda"), dict(device="cuda", dtype=torch.bfloat16)
    steps = torch.exp(torch.empty(dim, **cuda).uniform_(-6.9, -2.3))  # dt init in [1e-3, 1e-1]
    x = [torch.randn(batch, dim, length, **bf16), 0.5 * torch.randn(batch, dim, length, **bf16),
         -torch.arange(1, n_state + 1, **cuda).float().repeat(dim, 1),
         torch.randn(batch, n_state, length, **bf16), torch.randn(batch, n_state, length, **bf16),
         torch.ones(dim, **cuda), torch.randn(batch, dim, length, **bf16), torch.log(torch.expm1(steps))]
    return [t.requires_grad_() for t in x]


def median_us(call: Callable[[], object], warmup: int, reps: int) -> float:
    return statistics.median([ms * 1000 for ms in cuda_ms(call, reps, warmup)])


def timings(fn: Callable, x: list[torch.Tensor], warmup: int, reps: int, **kw) -> tuple[float, float]:
    """(forward us, forward + backward us) of fn on inputs x."""
    u, delta, A, B, C, D, z, bias = x
    dout = torch.randn_like(u)
    run = lambda: fn(u, delta, A, B, C, D, z, delta_bias=bias, delta_softplus=True, **kw)  # noqa: E731

    def both():
        torch.autograd.grad(run(), x, dout)

    with torch.no_grad():
        fwd = median_us(run, warmup, reps)
    return fwd, median_us(both, warmup, reps)


def parse_ints(text: str, count: int, sep: str, flag: str, form: str) -> tuple[int, ...]:
    """``count`` positive integers from ``text``; a malformed value exits with one line naming the flag."""
    try:
        values = tuple(int(v) for v in text.lower().split(sep))
    except ValueError:
        values = ()
    if len(values) != count or min(values) < 1:
        sys.exit(f"bench_scan.py: {flag} {text!r}: expected {form} (positive integers)")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="the paper shape set instead of small's")
    parser.add_argument("--shapes", help="comma-separated BATCHxDxNxL, e.g. 64x256x16x256")
    parser.add_argument("--tiles", action="append",
                        help="block_t,state_every,fwd_block_d,fwd_warps,bwd_block_d,bwd_warps (repeatable)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    shapes = ([parse_ints(s, 4, "x", "--shapes", "BATCHxDxNxL") for s in args.shapes.split(",")]
              if args.shapes else PAPER if args.paper else SMALL)
    tile_sets = ([Tiles(*parse_ints(t, 6, ",", "--tiles", "block_t,state_every,fwd_block_d,fwd_warps,"
                                                         "bwd_block_d,bwd_warps")) for t in args.tiles]
                 if args.tiles else [None])
    if not torch.cuda.is_available():
        sys.exit("bench_scan.py: needs a CUDA GPU (torch.cuda.is_available() is False)")
    print(f"{torch.cuda.get_device_name()}; mamba_ssm {'found' if selective_scan_fn else 'missing'}\n")
    print("| batch x D x N x L | Triton tiles | mamba_ssm fwd us | triton fwd us | mamba_ssm fwd+bwd us "
          "| triton fwd+bwd us | mamba_ssm / triton (fwd+bwd) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for shape in shapes:
        x = inputs(*shape)
        ref = timings(selective_scan_fn, x, args.warmup, args.reps) if selective_scan_fn else None
        for tiles in tile_sets:
            ours = timings(selective_scan_triton, x, args.warmup, args.reps, tiles=tiles)
            t = tiles or tiles_for(shape[2])
            label = ",".join(str(v) for v in (t.block_t, t.state_every, t.fwd_block_d, t.fwd_warps,
                                               t.bwd_block_d, t.bwd_warps))
            theirs = [f"{v:.0f}" for v in ref] if ref else ["-", "-"]
            ratio = f"{ref[1] / ours[1]:.2f}" if ref else "-"
            print(f"| {'x'.join(map(str, shape))} | {label} | {theirs[0]} | {ours[0]:.0f} | {theirs[1]} "
                  f"| {ours[1]:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
