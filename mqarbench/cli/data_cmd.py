"""`mqarbench data build|verify`: generate the datasets of a suite, check them on disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from mqarbench.presets import PRESET_HELP, PRESETS

DATA_DIR_HELP = "dataset cache (default: $MQARBENCH_DATA_DIR or ./mqar_data)"

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="build or verify the versioned datasets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="generate every dataset of a suite (reuses existing ones)")
    build.add_argument("--suite", default="all", help="suite in tasks/suites/ (default: all)")
    build.add_argument("--task", action="append", help="build only this task (repeatable) instead of a suite")
    build.add_argument("--preset", choices=PRESETS, help=PRESET_HELP)
    build.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    build.set_defaults(func=build_cmd)
    verify = sub.add_parser("verify", help="recompute content hashes; exit 1 naming any corrupt file")
    verify.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    verify.set_defaults(func=verify_cmd)


def _data_dir(args: argparse.Namespace) -> Path:
    from mqarbench.paths import default_data_dir

    return args.data_dir or default_data_dir()


def suite_tasks(suite_name: str) -> list[str]:
    """Every task a suite trains or tests on, train tasks first."""
    from mqarbench.data import load_suite

    suite = load_suite(suite_name)
    return list(dict.fromkeys(suite.train_tasks() + [e.test for e in suite.experiments]))


def build_cmd(args: argparse.Namespace) -> int:
    import time

    from mqarbench.data import build_dataset, load_task
    from mqarbench.presets import default_preset

    preset = default_preset(args.preset)
    names = args.task or suite_tasks(args.suite)
    specs = [load_task(name) for name in names]
    data_dir = _data_dir(args)
    start = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(specs)}] {spec.name} ({preset}) ...", end=" ", flush=True)
        existing = {p.name for p in data_dir.glob(f"{spec.name}-v*")} if data_dir.is_dir() else set()
        ds = build_dataset(spec, preset, data_dir)
        how = "reused" if ds.path.name in existing else f"built in {time.perf_counter() - t0:.1f}s"
        rows = ", ".join(f"{s} {n}" for s, n in ds.spec.counts.items() for n in [sum(n)])
        print(f"{how}: {ds.path}  sha256:{ds.short_hash}  ({len(ds.cells())} cell{'s' * (len(ds.cells()) != 1)}; {rows})")
    print(f"{len(specs)} datasets ready under {data_dir} in {time.perf_counter() - start:.1f}s")
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    from mqarbench.data import verify_datasets
    from mqarbench.data.store import list_datasets

    data_dir = _data_dir(args)
    problems = verify_datasets(data_dir)
    for problem in problems:
        print(f"error: {problem}")
    count = len(list_datasets(data_dir))
    if problems:
        print(f"{len(problems)} problem(s) in {count} datasets under {data_dir}")
        return 1
    print(f"{count} datasets under {data_dir}: all hashes match")
    return 0
