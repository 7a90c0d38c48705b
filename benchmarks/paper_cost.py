"""Projected GPU cost of the full `paper` grid (a projection, not a measurement).

    python benchmarks/paper_cost.py            # Markdown tables for docs/benchmarks.md
    python benchmarks/paper_cost.py --seeds 3

Training tokens per epoch come from the task specs at preset `paper` (every cell, its examples
times its sequence length; batches hold one length bucket, so no padding beyond it). Time per
token is the measured `paper` training step of each model (B=32, L=512, bf16, docs/benchmarks.md,
H100 80GB), assumed constant across lengths: the scans, convolutions and MLPs are linear in L,
so this is close for the recurrent models and generous for attention at L < 512. Evaluation
(100 examples per cell and test task) is left out: under 1% of the training tokens.
"""

from __future__ import annotations

import argparse

from mqarbench.data import load_suite, load_task, resolve
from mqarbench.runner.hparams import preset_hparams

# Measured `paper` step (ms) at B=32, L=512 on one H100 80GB, docs/benchmarks.md (models
# section, vocabulary 8192). Update from a new `python benchmarks/bench_models.py --preset paper`.
STEP_MS = {"pythia": 33.2, "hyena": 149.0, "rwkv": 189.9, "mamba": 97.9,
           "mamba_2x_state": 129.9, "mamba_4x_state": 216.9, "global_mamba": 198.3}
STEP_TOKENS = 32 * 512


def tokens_per_epoch(task: str) -> int:
    spec = resolve(load_task(task), "paper")
    return sum(n * seq_len for n, (seq_len, _) in zip(spec.counts["train"], spec.cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--suite", default="all")
    args = parser.parse_args()
    hp = preset_hparams("paper")
    tasks = load_suite(args.suite).train_tasks()
    runs_per_task = len(hp.lrs) * args.seeds
    print(f"Preset paper, suite {args.suite}: {len(tasks)} training tasks x {len(hp.lrs)} "
          f"learning rates x {args.seeds} seed(s), {hp.epochs} epochs, batch {hp.batch_size}.\n")
    print("| training task | cells | examples | tokens / epoch |")
    print("| --- | ---: | ---: | ---: |")
    total_tokens = 0
    for task in tasks:
        spec = resolve(load_task(task), "paper")
        tokens = tokens_per_epoch(task)
        total_tokens += tokens
        print(f"| {task} | {len(spec.cells)} | {sum(spec.counts['train']):,} | {tokens:,} |")
    print(f"| all | | | {total_tokens:,} |\n")
    print("| model | ms / step (B=32, L=512) | GPU-h per epoch, all tasks | GPU-h per run "
          "(mean over tasks) | GPU-h, whole grid |")
    print("| --- | ---: | ---: | ---: | ---: |")
    grid_hours, longest = 0.0, (0.0, "")
    for model, ms in STEP_MS.items():
        seconds_per_token = ms / 1e3 / STEP_TOKENS
        epoch_h = total_tokens * seconds_per_token / 3600
        run_h = epoch_h * hp.epochs / len(tasks)
        model_h = epoch_h * hp.epochs * runs_per_task
        grid_hours += model_h
        for task in tasks:
            hours = tokens_per_epoch(task) * hp.epochs * seconds_per_token / 3600
            longest = max(longest, (hours, f"{model} on {task}"))
        print(f"| {model} | {ms:.1f} | {epoch_h:.2f} | {run_h:.1f} | {model_h:,.0f} |")
    print(f"| all seven | | | | {grid_hours:,.0f} |")
    print(f"\nLongest single run: {longest[1]}, {longest[0]:.1f} GPU-h. With one run per GPU "
          f"(the runner's default at paper), G GPUs take about max({grid_hours:,.0f} / G, "
          f"{longest[0]:.1f}) hours of wall time.")


if __name__ == "__main__":
    main()
