"""Turn a runner's output directory into a new ``leaderboard/submissions/<id>/``."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
from pydantic import ValidationError

from mqarbench.errors import UserError
from mqarbench.leaderboard.catalog import TaskCatalog
from mqarbench.leaderboard.metadata import METADATA_FILE, SubmissionMetadata, write_metadata
from mqarbench.leaderboard.validate import validate_path
from mqarbench.leaderboard.verify import reported_run_ids
from mqarbench.results.store import RESULTS_FILE, read_results
from mqarbench.runner.weights import WEIGHTS_FILE

SUBMISSION_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
RUN_FILES = ("results.parquet", "results.json", "run.json", "results.parquet.sha256", "results.json.sha256")
WEIGHT_FILES = (WEIGHTS_FILE, WEIGHTS_FILE + ".sha256")


def _in_site(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a built leaderboard site under ``root`` (`run` writes one to
    ``<out>/site``, with copies of every run's results): those are not runs to submit."""
    return any((folder / "index.html").is_file() for folder in path.parents
               if folder != root and root in folder.parents)


def _result_files(results: Path) -> list[Path]:
    """Per-run result files; an aggregate file is used only where no run directory exists."""
    files = sorted(f for f in results.rglob(RESULTS_FILE) if not _in_site(f, results))
    if not files:
        raise UserError(f"--results {results}: no {RESULTS_FILE} found; pass the --out directory "
                        "of `mqarbench run`")
    per_run = [f for f in files if (f.parent / "run.json").is_file()]
    return per_run or files


def results_preset(files: list[Path]) -> str:
    presets = sorted({p for f in files for p in read_results(f)["preset"].to_pylist() if p})
    if len(presets) != 1:
        raise UserError(f"--results: found presets {presets or 'none'}; a submission holds exactly one "
                        "preset: pass a directory with the runs of one preset")
    return presets[0]


def _copy_run(src_dir: Path, dest: Path, with_weights: bool) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES + (WEIGHT_FILES if with_weights else ()):
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, dest / name)
    for npz in sorted((src_dir / "attention").glob("*.npz")):
        (dest / "attention").mkdir(exist_ok=True)
        shutil.copyfile(npz, dest / "attention" / npz.name)


def submit(results: Path, submission_id: str, fields: dict, root: Path,
           catalog: TaskCatalog) -> tuple[Path, list[str]]:
    """Copy results (+ attention maps, + the weights of every reported run) into ``root/<id>``,
    write metadata.yaml, validate.

    Returns the new directory and its problems (empty: ready for a pull request).
    """
    results, root = Path(results), Path(root)
    if not SUBMISSION_ID.match(submission_id):
        raise UserError(f"--name {submission_id!r}: use lowercase letters, digits, '.', '_' or '-' "
                        "(at most 64), e.g. mamba-small-2025-01")
    dest = root / submission_id
    if dest.exists():
        raise UserError(f"--name {submission_id}: {dest} already exists; submissions are never "
                        "overwritten: choose a new name")
    if not results.is_dir():
        raise UserError(f"--results {results}: not a directory")
    files = _result_files(results)
    try:
        meta = SubmissionMetadata.model_validate({**fields, "preset": results_preset(files)})
    except ValidationError as err:
        first = err.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "metadata"
        raise UserError(f"{flag}: {first['msg']}") from err
    reported = reported_run_ids(pa.concat_tables([read_results(f) for f in files]))
    staging = root / f".{submission_id}.staging-{os.getpid()}"
    try:
        for f in files:
            rel = f.parent.relative_to(results)
            # weights only for the runs the board reports: the other learning rates need none
            _copy_run(f.parent, staging / ("runs" / rel if rel.parts[:1] != ("runs",) else rel),
                      f.parent.name in reported)
        write_metadata(staging / METADATA_FILE, meta)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest, validate_path(dest, catalog)[1]
