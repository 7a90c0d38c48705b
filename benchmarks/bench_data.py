"""Data generation speed: single cells, a whole suite build, and how time grows with size.

    python benchmarks/bench_data.py            # prints Markdown tables for docs/benchmarks.md
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

from mqarbench.data import build_dataset, load_suite, load_task
from mqarbench.data.generators import generate_cell
from mqarbench.data.tables import cell_table


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cell_time(task: str, seq_len: int, pairs: int, rows: int, arrow: bool = False) -> float:
    spec = load_task(task)

    def run():
        data = generate_cell(spec, "train", seq_len, pairs, rows)
        if arrow:
            cell_table(data, spec.family, seq_len, pairs)

    return best_of(run)


def suite_build_time(suite: str, preset: str) -> tuple[float, int, int]:
    suite_spec = load_suite(suite)
    names = list(dict.fromkeys(suite_spec.train_tasks() + [e.test for e in suite_spec.experiments]))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        datasets = [build_dataset(name, preset, Path(tmp)) for name in names]
        elapsed = time.perf_counter() - start
        rows = sum(sum(c) for ds in datasets for c in ds.spec.counts.values())
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.parquet"))
    return elapsed, rows, size


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores")
    print("\n| workload | generate (s) | generate + Arrow table (s) |\n| --- | ---: | ---: |")
    for task, seq_len, pairs, rows in [("standard", 64, 4, 100_000), ("standard", 256, 64, 20_000),
                                       ("k2v2", 256, 16, 20_000), ("k4v8-shuffle", 512, 16, 20_000)]:
        print(f"| {task}: {rows:,} examples, L={seq_len}, {pairs} pairs | "
              f"{cell_time(task, seq_len, pairs, rows):.3f} | {cell_time(task, seq_len, pairs, rows, True):.3f} |")

    print("\nBuild of every dataset of suite `all` (generate, hash, write zstd Parquet and manifest):\n")
    print("| preset | s | examples | Parquet MiB |\n| --- | ---: | ---: | ---: |")
    for preset in ("tiny", "small", "paper"):
        elapsed, rows, size = suite_build_time("all", preset)
        print(f"| {preset} | {elapsed:.1f} | {rows:,} | {size / 2**20:.0f} |")

    print("\nGrowth with examples (standard, L=128, 8 pairs):\n\n| examples | s | us/example |\n| ---: | ---: | ---: |")
    for rows in (10_000, 20_000, 40_000, 80_000):
        t = cell_time("standard", 128, 8, rows)
        print(f"| {rows:,} | {t:.3f} | {1e6 * t / rows:.1f} |")
    print("\nGrowth with length (standard, 20,000 examples, 8 pairs):\n\n| L | s | ns/token |\n| ---: | ---: | ---: |")
    for seq_len in (64, 128, 256, 512):
        t = cell_time("standard", seq_len, 8, 20_000)
        print(f"| {seq_len} | {t:.3f} | {1e9 * t / (20_000 * seq_len):.0f} |")


if __name__ == "__main__":
    main()
