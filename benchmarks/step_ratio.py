"""One model's training step against another's in one process, in alternating rounds, so that
drift of the GPU between processes and over time falls on both alike.

    python benchmarks/step_ratio.py --models mamba,global_mamba --preset paper --long-conv triton

Prints each round's median ms per model and the median of the per-round ratios (second / first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import ours, step_ms  # noqa: E402 - a sibling script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mamba,global_mamba")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="steps timed per round (median)")
    parser.add_argument("--long-conv", help="MQARBENCH_LONG_CONV for the whole process")
    args = parser.parse_args()
    if args.long_conv:
        os.environ["MQARBENCH_LONG_CONV"] = args.long_conv
    first, second = args.models.split(",")
    models = {name: ours(name, args.preset, args.length)[1].cuda() for name in (first, second)}
    ms: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            ms[name].append(step_ms(model, args.batch, args.length, iters=args.iters)[0])
    ratios = [b / a for a, b in zip(ms[first], ms[second])]
    for name, values in ms.items():
        print(f"{name}: " + " / ".join(f"{v:.1f}" for v in values) + " ms")
    print(f"{second} / {first} per round: " + " / ".join(f"{r:.3f}" for r in ratios)
          + f"; median {statistics.median(ratios):.3f}x")


if __name__ == "__main__":
    main()
