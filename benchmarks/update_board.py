"""Fold a GPU session's runs of one built-in model into the reference board.

    python benchmarks/update_board.py --model mamba_2x_state --runs mqar_runs/board [--runs DIR ...]
                                      [--notes TEXT] [--seeds 3] [--preset small] [--data-dir mqar_data]

The model's runs on the board (``leaderboard/submissions/baseline-<model>-<preset>/runs/`` and
``leaderboard/pending/<model>/runs/``) are merged with its finished runs under each ``DIR/runs/``;
a run trained again replaces its earlier copy (same id: same data, settings and code). Then the
suites (`main`, `all`) whose every planned run (seeds 0..N-1) is there with every test become
the submission, through `mqarbench leaderboard submit`, with the earlier metadata (``--notes``
replaces the notes); the runs no covered suite plans wait in ``leaderboard/pending/<model>/runs/``.
The board changes only once the new submission validates, and never loses a suite it claimed.
A model without a submission yet keeps its runs in pending/ until a first suite is complete; then
``leaderboard/pending/<model>/metadata.yaml`` (written beforehand, with the fields of
`mqarbench leaderboard submit`) becomes its first submission's metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from board_todo import add_board_args, board_todo  # noqa: E402

from mqarbench.errors import UserError, report  # noqa: E402
from mqarbench.leaderboard.catalog import TaskCatalog  # noqa: E402
from mqarbench.leaderboard.metadata import METADATA_FILE, load_metadata  # noqa: E402
from mqarbench.leaderboard.submit import submit  # noqa: E402
from mqarbench.paths import default_data_dir, usable_dir  # noqa: E402

SUITES = ("main", "all")


def finished_runs(runs_dir: Path, model: str) -> dict[str, Path]:
    """Run id -> directory, for the finished runs of ``model`` directly under ``runs_dir``."""
    found = {}
    for run_json in sorted(runs_dir.glob("*/run.json")):
        run = json.loads(run_json.read_text())
        if run.get("model") == model and run.get("trained") and (run_json.parent / "results.parquet").is_file():
            found[run_json.parent.name] = run_json.parent
    return found


def merged_runs(model: str, submission: Path, pending: Path, new_dirs: list[Path]) -> tuple[dict[str, Path], int]:
    """The board's runs of ``model`` with the new ones laid over them, and how many were new."""
    runs = {**finished_runs(submission / "runs", model), **finished_runs(pending, model)}
    new: dict[str, Path] = {}
    for d in new_dirs:
        if not (d / "runs").is_dir():
            raise UserError(f"--runs {d}: no runs/ folder; pass the --out directory of `mqarbench run`")
        new.update(finished_runs(d / "runs", model))
    if not new:
        raise UserError(f"--runs: no finished run of model {model!r} under {', '.join(map(str, new_dirs))}")
    return {**runs, **new}, len(new)


def coverage(model: str, runs: dict[str, Path], seeds: int, preset: str, root: Path,
             data_dir: Path) -> dict[str, set[str]]:
    """Suite -> the run ids it plans, for each suite every one of whose runs holds all its tests."""
    index = {run_id: [path] for run_id, path in runs.items()}
    covered = {}
    for suite in SUITES:
        todo = board_todo([model], suite, seeds, preset, root, data_dir, index=index)[0]
        if not todo.to_train:
            covered[suite] = {s.run_id for s in todo.planned}
    return covered


def update(model: str, new_dirs: list[Path], seeds: int, preset: str, root: Path,
           data_dir: Path, notes: str | None) -> str:
    name = f"baseline-{model.replace('_', '-')}-{preset}"
    submission, pending = root / "submissions" / name, root / "pending" / model / "runs"
    runs, n_new = merged_runs(model, submission, pending, new_dirs)
    covered = coverage(model, runs, seeds, preset, root, data_dir)
    first_meta = pending.parent / METADATA_FILE  # a first submission's metadata, waiting with the runs
    if (submission / METADATA_FILE).is_file():
        old = load_metadata(submission / METADATA_FILE)
    elif not covered:
        return update_pending(runs, pending, root / f".update-{model}-{os.getpid()}", n_new)
    elif first_meta.is_file():
        old = load_metadata(first_meta)
    else:
        raise UserError(
            f"{submission}: no {METADATA_FILE}, and the runs now cover {', '.join(covered)}; nothing "
            f"changed: write {first_meta} (the fields of `mqarbench leaderboard submit`: model_name, "
            "authors, link, adapter_source, preset, date, suites, notes) and run this again")
    first = not (submission / METADATA_FILE).is_file()  # it claims what the runs cover, nothing before
    lost = [] if first else [s for s in old.suites if s not in covered]
    if lost:
        raise UserError(f"{name} claims {', '.join(lost)} but the merged runs do not cover it; "
                        "nothing changed (was a run retrained by a smaller suite?)")
    on_board = set().union(*covered.values())
    staging = root / f".update-{model}-{os.getpid()}"
    try:
        for run_id, path in runs.items():
            dest = staging / ("results" if run_id in on_board else "pending") / "runs" / run_id
            shutil.copytree(path, dest)
        fields = {**old.model_dump(mode="json"), "suites": list(covered), "notes": notes or old.notes,
                  "date": dt.datetime.now(dt.timezone.utc).date().isoformat()}
        fields.pop("preset")
        built, problems = submit(staging / "results", name, fields, staging / "submissions",
                                 TaskCatalog(data_dir))
        if problems:
            raise UserError(f"the new {name} does not validate, nothing changed: {problems[0]}")
        # swap in: the old folder is moved aside first so that a failure here loses nothing
        if submission.exists():
            os.replace(submission, staging / "old")
        os.replace(built, submission)
        if first:
            first_meta.unlink()  # the submission holds it now
        swap_pending(staging, pending)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    waiting = len(runs) - len(on_board)
    return (f"{name}: {len(on_board)} runs, suites {', '.join(covered)} ({n_new} new); "
            f"{waiting} waiting in {pending if waiting else 'no pending folder'}")


def swap_pending(staging: Path, pending: Path) -> None:
    """Put ``staging/pending/runs`` in place of ``pending`` (removing its model folder if empty)."""
    if pending.exists():
        os.replace(pending, staging / "old-pending")
    if (staging / "pending" / "runs").is_dir():
        pending.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "pending" / "runs", pending)
    elif pending.parent.is_dir() and not any(pending.parent.iterdir()):
        pending.parent.rmdir()


def update_pending(runs: dict[str, Path], pending: Path, staging: Path, n_new: int) -> str:
    """A model with no submission: every merged run waits in ``pending``."""
    try:
        for run_id, path in runs.items():
            shutil.copytree(path, staging / "pending" / "runs" / run_id)
        swap_pending(staging, pending)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"{pending.parent.name}: no submission yet; {len(runs)} runs ({n_new} new) waiting in {pending}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a built-in model's name, as in run.json")
    p.add_argument("--runs", type=Path, action="append", required=True,
                   help="a `mqarbench run --out` directory holding new runs; repeatable")
    p.add_argument("--notes", help="the submission's new notes (default: keep the earlier ones)")
    add_board_args(p)
    args = p.parse_args(argv)
    try:
        data_dir = usable_dir(args.data_dir or default_data_dir(), "--data-dir")
        print(update(args.model, args.runs, args.seeds, args.preset, args.root, data_dir,
                     args.notes))
    except UserError as err:
        return report(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
