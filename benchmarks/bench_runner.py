"""Summarise runner timings: per run, per model, the calibration scores and GPU utilization.

    python benchmarks/bench_runner.py RUNS_DIR [RUNS_DIR ...] [--gpu-util gpu_util.csv]

Reads every ``runs/<run_id>/run.json`` (and ``results.parquet``) under the given ``--out``
directories; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from mqarbench.data import load_suite
from mqarbench.results.store import read_results

PARTS = ("train_s", "data_s", "eval_s", "overhead_s")


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


def calibration(found: list[tuple[Path, dict]]) -> list[str]:
    lines = ["| model | lr | epochs | standard | last | shuffle |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for run_dir, r in found:
        if r["train_task"] != "standard" or not (run_dir / "results.parquet").exists():
            continue
        rows = [x for x in read_results(run_dir / "results.parquet").to_pylist() if x["slice"] == "overall"]
        score = {x["test_task"]: x["query_accuracy"] for x in rows}
        if "last" in score:
            lines.append(f"| {r['model']} | {r['hparams']['lr']:g} | {r['hparams']['epochs']} | " +
                         " | ".join(f"{score.get(t, float('nan')):.1f}" for t in ("standard", "last", "shuffle")) + " |")
    return lines


def utilization(path: Path) -> str:
    with open(path) as f:
        values = [float(row[1].strip().rstrip(" %")) for row in csv.reader(f) if len(row) > 1
                  and row[1].strip().rstrip(" %").replace(".", "", 1).isdigit()]
    if not values:
        return "GPU utilization: no samples"
    busy = sum(v > 0 for v in values) / len(values)
    return (f"GPU utilization over {len(values)} samples (500 ms): mean {statistics.mean(values):.0f}%, "
            f"median {statistics.median(values):.0f}%, non-zero {100 * busy:.0f}% of the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--gpu-util", type=Path)
    parser.add_argument("--suite", default="main")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    found = runs(args.dirs)
    print(f"## Runs ({len(found)} finished)\n", *per_run(found), sep="\n")
    if found:
        print("\n## Per model\n", *per_model(found, args.suite, args.epochs), sep="\n")
        print("\n## Calibration (trained on standard, query accuracy %)\n", *calibration(found), sep="\n")
    if args.gpu_util and args.gpu_util.exists():
        print("\n" + utilization(args.gpu_util))


if __name__ == "__main__":
    main()
