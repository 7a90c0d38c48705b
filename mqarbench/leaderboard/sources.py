"""Find results under source directories and group them into leaderboard entries.

An entry is one row of the leaderboard: a submission (a directory with ``metadata.yaml``), or,
for a runner's output directory, one model's local results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mqarbench.leaderboard.metadata import METADATA_FILE, SubmissionMetadata, load_metadata
from mqarbench.results.schema import RESULTS_SCHEMA
from mqarbench.results.store import RESULTS_FILE, read_results

ROW_KEY = ("run_id", "test_task", "slice", "seq_len", "num_kv_pairs")


@dataclass
class Entry:
    key: str  # unique, safe for file names: models/<key>.html
    name: str  # display name (the submitter's text: always escaped)
    table: pa.Table  # every row, before learning-rate selection
    metadata: SubmissionMetadata | None = None
    submission_dir: Path | None = None
    run_dirs: dict[str, Path] = field(default_factory=dict)  # run_id -> directory of its files
    # a submission whose every reported run `leaderboard verify` re-evaluated and passed (files unchanged
    # since); None: local results, not a submission
    verified: bool | None = None


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60] or "model"


def unique_rows(table: pa.Table) -> pa.Table:
    """Drop repeats of one (run, test task, slice) row, e.g. a run file and an aggregate file."""
    seen: set[tuple] = set()
    keep = []
    for row in table.select(list(ROW_KEY)).to_pylist():
        key = tuple(row.values())
        keep.append(key not in seen)
        seen.add(key)
    return table.filter(pa.array(keep, pa.bool_()))


def submission_root(path: Path, source: Path) -> Path | None:
    """The nearest directory from ``path`` up to ``source`` holding a ``metadata.yaml``."""
    for parent in [path.parent, *path.parent.parents]:
        if (parent / METADATA_FILE).is_file():
            return parent
        if parent == source:
            break
    return None


def find_results(sources: list[Path]) -> dict[Path | None, list[Path]]:
    """Results files grouped by submission directory (None: not part of a submission)."""
    groups: dict[Path | None, list[Path]] = {}
    for source in sources:
        source = Path(source).resolve()
        files = [source] if source.is_file() else sorted(source.rglob(RESULTS_FILE))
        for f in files:
            groups.setdefault(submission_root(f, source), []).append(f)
    return groups


def _run_dirs(files: list[Path], table: pa.Table) -> dict[str, Path]:
    run_ids = set(table["run_id"].to_pylist())
    dirs = {}
    for f in files:
        if f.parent.name in run_ids:
            dirs[f.parent.name] = f.parent
    return dirs


def _concat(files: list[Path], submission: bool) -> pa.Table:
    # a run's own results must match their digests; a submission's are checked by validate/verify
    tables = [read_results(f, require_digest=not submission) for f in dict.fromkeys(files)]
    return unique_rows(pa.concat_tables(tables)) if tables else RESULTS_SCHEMA.empty_table()


def load_entries(sources: list[Path]) -> list[Entry]:
    """Every entry under ``sources``: one per submission, one per model of loose results."""
    entries: list[Entry] = []
    for sub_dir, files in find_results(sources).items():
        table = _concat(files, sub_dir is not None)
        if sub_dir is not None:
            meta = load_metadata(sub_dir / METADATA_FILE)
            entries.append(Entry(sub_dir.name, meta.model_name, table, meta, sub_dir, _run_dirs(files, table)))
            continue
        for model in sorted(set(table["model"].to_pylist())):
            rows = table.filter(pc.equal(table["model"], model))
            entries.append(Entry(model, model, rows, run_dirs=_run_dirs(files, rows)))
    taken: set[str] = set()
    for entry in sorted(entries, key=lambda e: (e.metadata is None, e.key)):
        base = slugify(entry.key)
        key, n = base, 2
        while key in taken:
            key, n = f"{base}-{n}", n + 1
        entry.key = key
        taken.add(key)
    return sorted(entries, key=lambda e: e.key)
