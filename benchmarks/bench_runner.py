"""Summarise runner timings: per run, per model, the calibration scores and GPU utilization.

    python benchmarks/bench_runner.py RUNS_DIR [RUNS_DIR ...] [--gpu-util gpu_util.csv] [--wall-s S]

Reads every ``runs/<run_id>/run.json`` (and ``results.parquet``) under the given ``--out``
directories; prints Markdown tables. ``--wall-s`` (the matrix's ``N runs in S s`` line) adds its
runs per GPU-hour and MFU.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from datetime import datetime
from pathlib import Path

from mqarbench.data import load_suite
from mqarbench.results.store import overall_scores

PARTS = ("train_s", "data_s", "eval_s", "overhead_s")
PEAK_FLOPS = 989e12  # H100/H200 dense bf16


def runs(dirs: list[Path]) -> list[tuple[Path, dict]]:
    found = []
    for d in dirs:
        for path in sorted(Path(d).glob("runs/*/run.json")):
            info = json.loads(path.read_text())
            if info.get("timing"):
                found.append((path.parent, info))
    return found


def per_run(found: list[tuple[Path, dict]]) -> list[str]:
    lines = ["| model | train task | lr | epochs | wall s | train | data | eval | overhead | tokens/s | peak MiB | valid |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for _, r in found:
        t = r["timing"]
        lines.append(f"| {r['model']} | {r['train_task']} | {r['hparams']['lr']:g} | {r['hparams']['epochs']} | "
                     f"{t['wall_s']:.1f} | " + " | ".join(f"{t.get(p, 0):.1f}" for p in PARTS) +
                     f" | {r.get('train_tokens_per_s', 0):,.0f} | {r.get('peak_memory_mb', 0):,.0f} | "
                     f"{r.get('valid_query_accuracy', float('nan')):.1f} |")
    return lines


def per_model(found: list[tuple[Path, dict]], suite: str, epochs: int) -> list[str]:
    """Measured seconds per epoch -> one sequential pass of ``suite`` at ``epochs`` (2 learning rates)."""
    n_runs = len(load_suite(suite).train_tasks()) * 2
    lines = [f"| model | runs | s / epoch | eval s / epoch | est. `{suite}` s, sequential ({n_runs} runs x {epochs} epochs) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    models = dict.fromkeys(r["model"] for _, r in found)
    for m in models:
        mine = [r for _, r in found if r["model"] == m]
        per_epoch = statistics.median(r["timing"]["train_s"] / len(r["history"]) for r in mine)
        evals = statistics.median(r["timing"]["eval_s"] / len(r["history"]) for r in mine)
        lines.append(f"| {m} | {len(mine)} | {per_epoch:.1f} | {evals:.1f} | "
                     f"{n_runs * epochs * (per_epoch + evals):,.0f} |")
    return lines


def matrix_rate(found: list[tuple[Path, dict]], wall_s: float) -> list[str]:
    """Runs per GPU-hour and MFU of a matrix that took ``wall_s``: 6 x parameters x training tokens
    over the wall time, once without the vocabulary tables (as bench_pack.py) and once with the
    head (a real V x d matmul, most of a `small` model's FLOPs; an untied input table is a lookup
    and counts for nothing)."""
    flops_body = flops_all = 0.0
    for _, r in found:
        tokens = r["train_tokens_per_s"] * r["timing"]["train_s"]
        cfg = r["model_config"]
        table = cfg["vocab_size"] * cfg["d_model"]
        tied = cfg.get("tied_head", cfg.get("tie_embeddings", True))  # Hyena has no field: always tied
        body = r["params"] - (1 if tied else 2) * table
        flops_body += 6 * body * tokens
        flops_all += 6 * (body + table) * tokens
    return ["| runs | wall s | runs per GPU-hour | MFU (non-embedding) | MFU (with the vocabulary head) |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {len(found)} | {wall_s:.1f} | {3600 * len(found) / wall_s:.1f} | "
            f"{100 * flops_body / wall_s / PEAK_FLOPS:.2f}% | {100 * flops_all / wall_s / PEAK_FLOPS:.2f}% |"]


def calibration(found: list[tuple[Path, dict]]) -> list[str]:
    lines = ["| model | lr | epochs | standard | last | shuffle |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for run_dir, r in found:
        if r["train_task"] != "standard" or not (run_dir / "results.parquet").exists():
            continue
        score = overall_scores(run_dir)
        if "last" in score:
            lines.append(f"| {r['model']} | {r['hparams']['lr']:g} | {r['hparams']['epochs']} | " +
                         " | ".join(f"{score.get(t, float('nan')):.1f}" for t in ("standard", "last", "shuffle")) + " |")
    return lines


def gpu_samples(path: Path) -> list[tuple[float, float, float]]:
    """(seconds since the first sample, utilization %, memory MiB) per nvidia-smi CSV row."""
    samples, start = [], None
    with open(path) as f:
        for row in csv.reader(f):
            try:
                when = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f")
                util, mem = float(row[1].strip().rstrip(" %")), float(row[2].strip().split()[0])
            except (IndexError, ValueError):  # the header, or a row cut short
                continue
            start = start or when
            samples.append(((when - start).total_seconds(), util, mem))
    return samples


def utilization(samples: list[tuple[float, float, float]]) -> str:
    if not samples:
        return "GPU utilization: no samples"
    values = [util for _, util, _ in samples]
    busy = sum(v > 0 for v in values) / len(values)
    return (f"GPU utilization over {len(values)} samples (500 ms): mean {statistics.mean(values):.0f}%, "
            f"median {statistics.median(values):.0f}%, non-zero {100 * busy:.0f}% of the time")


def timeline(samples: list[tuple[float, float, float]], bucket_s: float = 30.0) -> list[str]:
    """GPU utilization and memory over the run, one row per ``bucket_s`` seconds."""
    buckets: dict[int, list[tuple[float, float]]] = {}
    for t, util, mem in samples:
        buckets.setdefault(int(t // bucket_s), []).append((util, mem))
    lines = ["| from s | utilization % | memory GiB | |", "| ---: | ---: | ---: | --- |"]
    for index in sorted(buckets):
        util = statistics.mean(u for u, _ in buckets[index])
        mem = max(m for _, m in buckets[index]) / 1024
        lines.append(f"| {index * bucket_s:.0f} | {util:.0f} | {mem:.1f} | {'#' * round(util / 5)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--gpu-util", type=Path)
    parser.add_argument("--suite", default="main")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--wall-s", type=float, help="the matrix's wall time (its `N runs in S s` line)")
    args = parser.parse_args()
    found = runs(args.dirs)
    print(f"## Runs ({len(found)} finished)\n", *per_run(found), sep="\n")
    if found:
        print("\n## Per model\n", *per_model(found, args.suite, args.epochs), sep="\n")
        print("\n## Calibration (trained on standard, query accuracy %)\n", *calibration(found), sep="\n")
        if args.wall_s:
            print("\n## Matrix\n", *matrix_rate(found, args.wall_s), sep="\n")
    if args.gpu_util and args.gpu_util.exists():
        samples = gpu_samples(args.gpu_util)
        print("\n" + utilization(samples), "\n## GPU over time\n", *timeline(samples), sep="\n")


if __name__ == "__main__":
    main()
