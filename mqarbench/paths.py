"""Where things live: the task specs, the data cache, results, the leaderboard."""

from __future__ import annotations

import os
from pathlib import Path

from mqarbench.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


def tasks_dir() -> Path:
    """The directory of task and suite YAML files (``$MQARBENCH_TASKS_DIR`` overrides)."""
    path = Path(os.environ.get("MQARBENCH_TASKS_DIR", REPO_ROOT / "tasks"))
    if not path.is_dir():
        raise UserError(
            f"task specs not found at {path}: run from a clone installed with `pip install -e .` "
            "or set MQARBENCH_TASKS_DIR to the tasks/ directory"
        )
    return path


def default_data_dir() -> Path:
    """Dataset cache (``$MQARBENCH_DATA_DIR`` overrides)."""
    return Path(os.environ.get("MQARBENCH_DATA_DIR", Path.cwd() / "mqar_data"))


def default_out_dir() -> Path:
    """Runs, checkpoints and results (``$MQARBENCH_OUT_DIR`` overrides)."""
    return Path(os.environ.get("MQARBENCH_OUT_DIR", Path.cwd() / "mqar_runs"))


def leaderboard_dir() -> Path:
    return REPO_ROOT / "leaderboard"


def usable_dir(path: Path, flag: str) -> Path:
    """``path`` as a directory this process can write (created if missing), else a one-line UserError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a directory; pass a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create it ({err.strerror}); pass a directory you can write") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: not writable; pass a directory you can write")
    return path
