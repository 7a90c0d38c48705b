"""Validation accuracy per run and the board's cells, for runs that are not (yet) a submission.

    python benchmarks/runs_table.py leaderboard/submissions/baseline-rwkv7-small mqar_runs/board

For each folder (an `mqarbench run --out`, or any folder holding run directories): one row per
(model, train task, learning rate) with each seed's validation query accuracy, then every
(train task -> test task) cell with the learning rate chosen on validation per seed, as the board
chooses it, as mean ± std over seeds. Results are read through their digests.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from mqarbench.results.score import over_seeds
from mqarbench.results.select import select_best_lr
from mqarbench.results.store import collect_results


def tables(folder: Path) -> list[str]:
    results = collect_results(folder)
    overall = [r for r in results.to_pylist() if r["slice"] == "overall"]
    valid: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in overall:
        valid[(r["model"], r["train_task"], r["lr"])][r["seed"]] = r["valid_query_accuracy"]
    lines = ["| model | train task | lr | valid, seed 0 / 1 / 2 ... |", "| --- | --- | ---: | --- |"]
    for (model, train, lr), seeds in sorted(valid.items()):
        lines.append(f"| {model} | {train} | {lr:g} | "
                     + " / ".join(f"{seeds[s]:.1f}" for s in sorted(seeds)) + " |")
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in select_best_lr(results).to_pylist():
        if r["slice"] == "overall":
            cells[(r["model"], r["train_task"], r["test_task"])].append(r["query_accuracy"])
    lines += ["", "| model | train -> test | test query accuracy |", "| --- | --- | ---: |"]
    lines += [f"| {model} | {train} -> {test} | {over_seeds(values).text()} |"
              for (model, train, test), values in sorted(cells.items())]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    for folder in args.folders:
        if not folder.is_dir():
            parser.error(f"{folder}: no such folder")
        print(f"\n## {folder}\n")
        print("\n".join(tables(folder)))


if __name__ == "__main__":
    main()
