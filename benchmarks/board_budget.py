"""What the reference board costs in GPU time, and how few epochs its learnability targets need.

    python benchmarks/board_budget.py [--board leaderboard/submissions] [--budget-min 60] [--models m1,m2] [--tasks t1,t2]

Reads every run's ``run.json`` under ``BOARD/*/runs/`` (the board's runs, with their per-epoch
validation history, wall time and pack size) and prints:

1. GPU time per model: a run's share of the GPU is its wall time over its pack's size (the
   members of a pack train side by side). Where another lane shared the GPU the wall time is
   longer, so the sums are an upper bound of one GPU alone.
2. For each epoch count E, whether the calibration targets on in-domain validation would hold had
   the runs stopped after E epochs (pythia >= 95 on every training task, mamba >= 90 on
   standard, every seed, the learning rate chosen on validation per seed as the board does), and
   the board's GPU time at E epochs (each run's time per epoch x min(E, the epochs it ran)).
   A run trained for E epochs anneals its learning rate within them, which a run cut after E of 30
   has not: its accuracy at E is a lower bound of the shorter run's, so E here is an upper bound.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mqarbench.analysis.calibration import ATTENTION_FLOOR, MAMBA_FLOOR, TRAIN_TASKS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_runs import read_run, run_dirs  # noqa: E402 - a sibling module

# the calibration's in-domain targets, as docs/reproduction.md judges them: model -> (tasks, floor)
TARGETS = {"pythia": (TRAIN_TASKS, ATTENTION_FLOOR), "mamba": (("standard",), MAMBA_FLOOR)}


@dataclass(frozen=True)
class Run:
    model: str
    task: str
    lr: float
    seed: int
    valid: tuple[float, ...]  # validation query accuracy after each epoch run
    epoch_s: float  # GPU seconds per epoch: wall / pack size / epochs run

    def best_until(self, epochs: int) -> float:
        return max(self.valid[:epochs])

    def gpu_s(self, epochs: int) -> float:
        return self.epoch_s * min(epochs, len(self.valid))


def load_runs(board: Path, models: set[str] | None = None, tasks: set[str] | None = None) -> list[Run]:
    runs = []
    for run_dir in run_dirs(board):
        info = read_run(run_dir)
        if info is None:
            continue
        if (models is not None and info["model"] not in models) or (tasks is not None and info["train_task"] not in tasks):
            continue
        valid = tuple(h["valid_query_accuracy"] for h in info["history"])
        if not valid:
            continue
        share = info["wall_time_s"] / max(1, info.get("pack_size") or 1)
        runs.append(Run(info["model"], info["train_task"], info["hparams"]["lr"], info["seed"],
                        valid, share / len(valid)))
    return runs


def selected_valid(runs: list[Run], model: str, task: str, epochs: int) -> dict[int, float]:
    """Per seed, the best validation so far at the learning rate validation picks."""
    best: dict[int, float] = defaultdict(float)
    for run in runs:
        if run.model == model and run.task == task:
            best[run.seed] = max(best[run.seed], run.best_until(epochs))
    return dict(best)


def targets_met(runs: list[Run], epochs: int) -> tuple[bool, list[str]]:
    misses = []
    for model, (tasks, floor) in TARGETS.items():
        for task in tasks:
            seeds = selected_valid(runs, model, task, epochs)
            if not seeds:
                misses.append(f"{model}/{task}: no runs")
            elif min(seeds.values()) < floor:
                misses.append(f"{model}/{task} {min(seeds.values()):.1f}")
    return not misses, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", type=Path, default=Path("leaderboard/submissions"))
    parser.add_argument("--budget-min", type=float, default=60.0, help="the GPU budget to compare with")
    parser.add_argument("--models", help="comma-separated models (default: every model on the board)")
    parser.add_argument("--tasks", help="comma-separated training tasks (default: all; main's: "
                        "standard,shuffle,k2v2,k4v8-shuffle)")
    args = parser.parse_args()
    models = set(args.models.split(",")) if args.models else None
    tasks = set(args.tasks.split(",")) if args.tasks else None
    runs = load_runs(args.board, models, tasks)
    if not runs:
        parser.error(f"--board {args.board}: no run.json under */runs/"
                     + (f" of --models {args.models}" if models else "") + (f" trained on --tasks {args.tasks}" if tasks else ""))
    longest = max(len(r.valid) for r in runs)
    per_model: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        per_model[run.model].append(run)
    print("| model | runs | GPU min (upper bound) |\n| --- | ---: | ---: |")
    for model, own in sorted(per_model.items()):
        print(f"| {model} | {len(own)} | {sum(r.gpu_s(longest) for r in own) / 60:,.1f} |")
    total = sum(r.gpu_s(longest) for r in runs) / 60
    print(f"| all | {len(runs)} | {total:,.1f} |")
    print("\n| epochs | targets met | misses | board GPU min |\n| ---: | --- | --- | ---: |")
    first = None
    for epochs in range(1, longest + 1):
        met, misses = targets_met(runs, epochs)
        first = first or (epochs if met else None)
        gpu_min = sum(r.gpu_s(epochs) for r in runs) / 60
        print(f"| {epochs} | {'yes' if met else 'no'} | {', '.join(misses) or '-'} | {gpu_min:,.1f} |")
    if first is None:
        print(f"\nThe targets are not met within {longest} epochs.")
        return
    at_first = sum(r.gpu_s(first) for r in runs) / 60
    print(f"\nFewest epochs meeting the in-domain targets: {first}; the board then takes about "
          f"{at_first:,.1f} GPU min ({at_first / args.budget_min:.1f}x the {args.budget_min:g}-min budget).")


if __name__ == "__main__":
    main()
