"""CSV and JSON downloads of every table (stable names under ``data/``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mqarbench.io import write_text_atomic

_FORMULA_START = ("=", "+", "@", "\t", "\r")


def _cell(value):
    # Text from a submission must not run as a spreadsheet formula when the CSV is opened.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def write_table(data_dir: Path, stem: str, rows: list[dict], columns: list[str] | None = None) -> None:
    """``data_dir/<stem>.csv`` and ``.json`` (the JSON keeps the raw values)."""
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    write_text_atomic(data_dir / f"{stem}.csv", buf.getvalue())
    write_text_atomic(data_dir / f"{stem}.json", json.dumps(rows, indent=1, default=str) + "\n")
