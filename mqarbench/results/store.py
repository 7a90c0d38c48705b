"""Read and write result tables (Parquet, plus JSON for humans), checked against the schema.

Each file gets a ``.sha256`` sidecar, as checkpoints do: a results file that no longer matches
its digest is never read (the runner evaluates the run again; the leaderboard refuses it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mqarbench.errors import UserError
from mqarbench.io import atomic_path, sha256_file, write_json_atomic, write_text_atomic
from mqarbench.results.schema import RESULTS_SCHEMA, SCHEMA_VERSION

RESULTS_FILE = "results.parquet"


class CorruptResults(UserError):
    """A results file that does not match its sidecar digest (or has none where one is required)."""


def sidecar(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def write_digest(path: Path) -> None:
    """Record ``path``'s sha256 beside it (written after the file, so a crash leaves a mismatch, never a pass)."""
    write_text_atomic(sidecar(path), sha256_file(path) + "\n")


def check_digest(path: Path, required: bool = True) -> None:
    """CorruptResults unless ``path`` matches its sidecar; a missing sidecar fails only if ``required``."""
    path, side = Path(path), sidecar(path)
    rerun = "re-run the same `mqarbench run` (it evaluates the run again) or delete the run directory"
    if not side.is_file():
        if required:
            raise CorruptResults(f"{path}: no {side.name} beside it (written by an older mqarbench or "
                                 f"copied without it); {rerun}")
        return
    if sha256_file(path) != side.read_text().strip():
        raise CorruptResults(f"{path}: sha256 differs from {side.name} (corrupt or modified results); {rerun}")


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts keyed by schema column) -> a table of exactly the results schema."""
    missing = [c for c in RESULTS_SCHEMA.names if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def write_results(table: pa.Table, path: Path) -> None:
    """Write ``path`` (.parquet) and its ``.json`` twin, each atomically."""
    table = table.cast(RESULTS_SCHEMA)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    write_digest(path)
    write_json_atomic(path.with_suffix(".json"), table.to_pylist())
    write_digest(path.with_suffix(".json"))


def read_results(path: Path, require_digest: bool = True) -> pa.Table:
    """Read one results Parquet file; a wrong schema or corrupt file is a one-line UserError.

    The file must match its ``.sha256`` sidecar; ``require_digest=False`` accepts a file without
    one (leaderboard submissions, whose numbers ``leaderboard verify`` checks instead).
    """
    path = Path(path)
    if path.is_file():
        check_digest(path, require_digest)
    return read_results_unchecked(path)


def overall_scores(run_dir: Path) -> dict[str, float]:
    """A run's query accuracy per test task (its ``overall`` rows), from ``results.parquet``."""
    rows = read_results(Path(run_dir) / "results.parquet").to_pylist()
    return {r["test_task"]: r["query_accuracy"] for r in rows if r["slice"] == "overall"}


def read_results_unchecked(path: Path) -> pa.Table:
    """``read_results`` without the digest check: for validation, which reports it separately."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise UserError(f"{path}: not a readable Parquet results file ({err}); delete it and re-run") from err
    meta = table.schema.metadata or {}
    version = meta.get(b"mqarbench.results.schema_version", b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise UserError(
            f"{path}: results schema version {version}, this mqarbench reads {SCHEMA_VERSION}; "
            "re-run the suite or use the matching mqarbench version"
        )
    missing = [c for c in RESULTS_SCHEMA.names if c not in table.column_names]
    if missing:
        raise UserError(f"{path}: results file lacks columns {', '.join(missing)}")
    return table.select(RESULTS_SCHEMA.names).cast(RESULTS_SCHEMA)


_warned: set[tuple] = set()


def results_or_none(path: Path) -> pa.Table | None:
    """The verified results at ``path``, or None (with one warning per file version) if unusable."""
    try:
        return read_results(path)
    except UserError as err:
        stat = Path(path).stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _warned:
            _warned.add(key)
            print(f"warning: {err}; evaluating this run again", file=sys.stderr)
        return None


def collect_results(root: Path) -> pa.Table:
    """Concatenate every ``results.parquet`` under ``root`` (empty table if none)."""
    files = sorted(Path(root).rglob(RESULTS_FILE))
    if not files:
        return RESULTS_SCHEMA.empty_table()
    return pa.concat_tables([read_results(f) for f in files])  # every file checked against its digest


def rows_as_json(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), indent=2, default=str)
