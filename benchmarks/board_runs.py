"""The reference board's run folders and their ``run.json``, read alike by the board scripts
(board_budget.py, board_todo.py): one place that knows a submission's layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_dirs(folder: Path) -> list[Path]:
    """Every run folder of the submissions in ``folder`` (``folder/SUBMISSION/runs/RUN_ID``), sorted."""
    return sorted(d for d in folder.glob("*/runs/*") if d.is_dir())


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir``'s run.json, or None where it has none; a malformed one raises (callers differ
    in whether that ends them)."""
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else None
