"""Training throughput of one GPU: eager runs against packs of graphed runs and stacks.

    python benchmarks/bench_pack.py --models mamba,pythia --packs 1,4,8,16,24 [--stacks 8,24] [--profile] [--task standard]

For each model at preset ``small`` (real training data of ``--task``): the steps per second of one
eager run (today's path), of K graphed members replayed side by side on K streams (steady state
after capture) and, for a model with a stacked form, of K members trained as one stack
(``mqarbench/runner/stacked.py``), with the aggregate tokens/s and MFU (6 x non-embedding
parameters x tokens over 989 TFLOP/s dense bf16). Prints a Markdown table; ``--profile`` adds the
GPU kernels of a few rounds of the largest stack.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mqarbench.data import build_dataset
from mqarbench.models.registry import load_adapter
from mqarbench.models.stacked import can_stack
from mqarbench.runner.graphs import GraphedMember
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import plan_run
from mqarbench.runner.stacked import Stack
from mqarbench.runner.train import Member, TrainData

PEAK_FLOPS = 989e12


def members(model: str, k: int, graphed: bool, data: TrainData, ds, out: Path) -> list[Member]:
    adapter = load_adapter(model)
    hp = sweep("small")[0]
    found = []
    for seed in range(k):
        spec = plan_run(adapter, model, ds, [], "small", hp, seed, out / f"{model}-{k}-{graphed}")
        torch.manual_seed(seed)
        net = adapter.build("small", spec.vocab_size, spec.max_len).cuda()
        device = torch.device("cuda")
        m = (GraphedMember(spec, net, data, device, torch.cuda.Stream()) if graphed
             else Member(spec, net, data, device))
        m.begin_epoch()
        found.append(m)
    return found


def steps_per_s(group: list[Member], steps: int) -> tuple[float, int, float]:
    """Round-robin ``steps`` steps of every member; (member-steps per second, tokens, seconds)."""
    for m in group:  # warm: a few steps each
        for _ in range(3):
            m.step()
    torch.cuda.synchronize()
    tokens = sum(m.state.train_tokens for m in group)
    t0 = time.perf_counter()
    for _ in range(steps):
        for m in group:
            if m.epoch_finished:
                m.begin_epoch()
            m.step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return steps * len(group) / dt, sum(m.state.train_tokens for m in group) - tokens, dt


def stack_rate(group: list[Member], rounds: int, profile: bool) -> tuple[float, int, float]:
    """``rounds`` steps of every member as one stack; (member-steps per second, tokens, seconds)."""
    stack = Stack(torch.device("cuda"))
    for m in group:
        stack.add(m)

    def run(n: int) -> None:
        for _ in range(n):
            for m in group:
                if m.epoch_finished:
                    m.begin_epoch()
            stack.round()
    run(3)
    torch.cuda.synchronize()
    tokens = sum(m.state.train_tokens for m in group)
    t0 = time.perf_counter()
    run(rounds)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if profile:
        from torch.profiler import ProfilerActivity
        with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run(5)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=20), flush=True)
    return rounds * len(group) / dt, sum(m.state.train_tokens for m in group) - tokens, dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mamba,pythia")
    parser.add_argument("--packs", default="1,4,8,16,24")
    parser.add_argument("--stacks", default="", help="stack sizes K for models with a stacked form")
    parser.add_argument("--profile", action="store_true", help="GPU kernels of the largest stack's rounds")
    parser.add_argument("--task", default="standard")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data-dir", type=Path, default=Path("mqar_data"))
    args = parser.parse_args()
    ds = build_dataset(args.task, "small", args.data_dir)
    data = TrainData.load(plan_run(load_adapter("mamba"), "mamba", ds, [], "small", sweep("small")[0], 0,
                                   Path("/tmp")), torch.device("cuda"))
    print("| model | mode | K | member-steps/s | speed-up vs eager | tokens/s | MFU | GiB reserved |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            eager = None
            for graphed, ks in ((False, [1]), (True, [int(k) for k in args.packs.split(",")])):
                for k in ks:
                    torch.cuda.empty_cache()
                    try:
                        group = members(model, k, graphed, data, ds, Path(tmp))
                        rate, tokens, dt = steps_per_s(group, max(5, args.steps // max(1, k // 4)))
                    except Exception as err:  # noqa: BLE001 - report and go on with the next size
                        print(f"| {model} | {'graphs' if graphed else 'eager'} | {k} | failed: {type(err).__name__}: {str(err)[:120]} | | | | |")
                        continue
                    net = group[0].model
                    params = sum(p.numel() for n, p in net.named_parameters() if "embed" not in n)
                    eager = eager or rate
                    print(f"| {model} | {'graphs' if graphed else 'eager'} | {k} | {rate:.1f} | {rate / eager:.2f}x | "
                          f"{tokens / dt:,.0f} | {100 * 6 * params * tokens / dt / PEAK_FLOPS:.2f}% | "
                          f"{torch.cuda.memory_reserved() / 2**30:.1f} |", flush=True)
                    del group, net
                    torch.cuda.synchronize()
            stacks = [int(k) for k in args.stacks.split(",") if k]
            if not stacks or not can_stack(load_adapter(model).build("tiny", 64, 64)):
                continue
            for k in stacks:
                torch.cuda.empty_cache()
                group = members(model, k, False, data, ds, Path(tmp))
                rate, tokens, dt = stack_rate(group, max(5, args.steps), args.profile and k == max(stacks))
                net = group[0].model
                params = sum(p.numel() for n, p in net.named_parameters() if "embed" not in n)
                print(f"| {model} | stacked | {k} | {rate:.1f} | {rate / eager:.2f}x | {tokens / dt:,.0f} | "
                      f"{100 * 6 * params * tokens / dt / PEAK_FLOPS:.2f}% | "
                      f"{torch.cuda.memory_reserved() / 2**30:.1f} |", flush=True)
                del group, net
                torch.cuda.synchronize()


if __name__ == "__main__":
    main()
