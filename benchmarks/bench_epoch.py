"""Time per training epoch of a task at a preset, measured bucket by bucket with the runner's step.

    python benchmarks/bench_epoch.py --models mamba,global_mamba --task k4v8-shuffle --preset paper

For each model: the real training split of ``--task`` (built or reused in ``--data-dir``), the
model at the preset's size, and the runner's own training step at the preset's batch size
(labelled positions only, bf16 autocast, clipping, AdamW): on CUDA a ``GraphedMember`` replaying
its captured step, as ``mqarbench run`` trains by default (``--eager``: ``Member.step``, as
``--pack 1`` does). Each length bucket is timed on the run's own first batches of that bucket
(``--steps`` after 3 warm-up steps), and the epoch is the sum over buckets of (batches in the
bucket) x (its measured step): exact batch counts, measured step times, no assumption that time
per token is the same at every length. One run alone on the GPU; evaluation is left out. A model
whose kernels fall back to a reference path on CUDA is refused, as the runner refuses it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mqarbench.data import build_dataset
from mqarbench.kernels import kernel_paths, slow_paths
from mqarbench.kernels.determinism import make_deterministic
from mqarbench.models.registry import load_adapter
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import plan_run
from mqarbench.runner.train import Member, TrainData


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bucket_step_s(member: Member, bucket: int, steps: int, warmup: int = 3) -> float:
    """Mean seconds of one training step on the epoch's own batches of ``bucket`` (cycled if the
    bucket has fewer than warm-up + timed batches)."""
    positions = [i for i, (b, _) in enumerate(member.plan) if b == bucket]
    order = [positions[k % len(positions)] for k in range(warmup + steps)]

    def run(cursors: list[int]) -> None:
        for cursor in cursors:  # the step reads the batch at the cursor (graphed: its tables too)
            member.cursor = cursor
            member.step()

    run(order[:warmup])
    sync(member.device)
    t0 = time.perf_counter()
    run(order[warmup:])
    sync(member.device)
    return (time.perf_counter() - t0) / steps


def epoch_table(model: str, task: str, preset: str, data_dir: Path, steps: int,
                device: torch.device, graphed: bool = True) -> tuple[list[str], float]:
    """Markdown rows per bucket and the epoch's seconds."""
    adapter = load_adapter(model)
    ds = build_dataset(task, preset, data_dir)
    hp = sweep(preset)[0]
    with tempfile.TemporaryDirectory() as tmp:
        spec = plan_run(adapter, model, ds, [], preset, hp, 0, Path(tmp))
        data = TrainData.load(spec, device)
        torch.manual_seed(0)
        net = adapter.build(preset, spec.vocab_size, spec.max_len).to(device)
        if device.type == "cuda" and slow_paths(net):
            raise SystemExit(f"{model}: a reference kernel on CUDA ({'; '.join(slow_paths(net))}); "
                             "install the fast kernels (README, Install) before timing it")
        if device.type == "cuda" and graphed:
            from mqarbench.runner.graphs import GraphedMember

            member = GraphedMember(spec, net, data, device, torch.cuda.Stream(device))
        else:
            member = Member(spec, net, data, device)
        member.begin_epoch()
        kernels = ", ".join(f"{k}={v}" for k, v in kernel_paths(net).items()) or "library"
        rows, epoch_s = [], 0.0
        for bucket, (ids, _) in enumerate(data.buckets):
            batches = -(-data.sizes[bucket] // hp.batch_size)
            step_s = bucket_step_s(member, bucket, steps)
            epoch_s += batches * step_s
            rows.append(f"| {model} | {ids.shape[1]} | {data.sizes[bucket]:,} | {batches:,} | "
                        f"{1e3 * step_s:.2f} | {batches * step_s:,.2f} | {kernels} |")
    return rows, epoch_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mamba,global_mamba")
    parser.add_argument("--task", default="k4v8-shuffle")
    parser.add_argument("--preset", default="paper", choices=["tiny", "small", "paper"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per length bucket")
    parser.add_argument("--data-dir", type=Path, default=Path("mqar_data"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--eager", action="store_true", help="time Member.step (as --pack 1), not graphs")
    args = parser.parse_args()
    device = torch.device(args.device)
    make_deterministic(device)  # as a run does (unless MQARBENCH_DETERMINISTIC=0)
    epochs = sweep(args.preset)[0].epochs
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    mode = "eager" if args.eager or device.type != "cuda" else "CUDA graphs"
    print(f"Task {args.task}, preset {args.preset} (batch {sweep(args.preset)[0].batch_size}, "
          f"{epochs} epochs), {name}, torch {torch.__version__}, {mode}.\n")
    print("| model | L | examples | batches | ms / step | s / epoch | kernels |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    totals = {}
    for model in args.models.split(","):
        rows, totals[model] = epoch_table(model, args.task, args.preset, args.data_dir, args.steps, device,
                                          graphed=not args.eager)
        print("\n".join(rows), flush=True)
    print()
    for model, seconds in totals.items():
        print(f"{model}: {seconds:,.2f} s per epoch of {args.task}; one run ({epochs} epochs, "
              f"evaluation left out): {seconds * epochs / 3600:.2f} h")


if __name__ == "__main__":
    main()
