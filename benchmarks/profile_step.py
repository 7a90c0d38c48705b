"""Where a training step's GPU time goes: the kernels of a few steps, by total CUDA time.

    python benchmarks/profile_step.py --models mamba,pythia [--preset small] [--bucket -1]

Profiles the step that graphed members replay (``mqarbench.runner.graphs.static_loss`` + backward
+ clipping + AdamW) on real training data of ``standard``, in the given length bucket (default:
the longest); prints the top kernels per model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from mqarbench.data import build_dataset
from mqarbench.runner.graphs import static_buckets, static_loss
from mqarbench.runner.hparams import sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_helpers import model_and_data  # noqa: E402 - a sibling module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mamba,pythia")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--bucket", type=int, default=-1)
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()
    device = torch.device("cuda")
    ds = build_dataset("standard", args.preset, Path("mqar_data"))
    hp = sweep(args.preset)[0]
    for model_name in args.models.split(","):
        spec, data, model = model_and_data(model_name, ds, args.preset, hp, device, Path("/tmp/profile"))
        bucket = static_buckets(data, device)[args.bucket]
        opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(hp.lr, device=device), capturable=True)
        rows, index, target = bucket.batch(np.arange(hp.batch_size))

        def step():
            loss = static_loss(model, bucket.input_ids, rows, index, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) / 5 * 1e3
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        # kernel time against wall time: near 1 the step is bound by its kernels, far below by launches
        kernel_ms = sum(e.self_device_time_total for e in kernels) / 5 / 1e3
        print(f"\n## {model_name}: bucket L={bucket.length}, {len(target)} labels, "
              f"B={hp.batch_size}, V={spec.vocab_size} (5 steps): eager step {wall_ms:.2f} ms, "
              f"its kernels {kernel_ms:.2f} ms, {sum(e.count for e in kernels) // 5} "
              f"kernel calls per step")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.top, max_name_column_width=70))
        data = None  # the next model's data replaces it
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
