"""Read and write result tables (Parquet, plus JSON for humans), checked against the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mqarbench.errors import UserError
from mqarbench.io import atomic_path, write_json_atomic
from mqarbench.results.schema import RESULTS_SCHEMA, SCHEMA_VERSION

RESULTS_FILE = "results.parquet"


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
    write_json_atomic(path.with_suffix(".json"), table.to_pylist())


def read_results(path: Path) -> pa.Table:
    """Read one results Parquet file; a wrong schema or corrupt file is a one-line UserError."""
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


def collect_results(root: Path) -> pa.Table:
    """Concatenate every ``results.parquet`` under ``root`` (empty table if none)."""
    files = sorted(Path(root).rglob(RESULTS_FILE))
    if not files:
        return RESULTS_SCHEMA.empty_table()
    return pa.concat_tables([read_results(f) for f in files])


def rows_as_json(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), indent=2, default=str)
