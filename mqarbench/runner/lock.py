"""A per-run lock file: two `mqarbench run`s on one ``--out`` never train the same run at once.

The lock is an advisory ``flock`` on ``<run_dir>/run.lock``: the kernel drops it when its holder
exits, however it exits, so a killed run never leaves a stale lock. A second process waits for the
holder, then finds the run finished (or resumes it where the holder stopped).
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = "run.lock"


@contextmanager
def hold_run(run_dir: Path, report=None) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block, waiting (and saying so) while another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say = report or (lambda text: print(text, file=sys.stderr, flush=True))
            say(f"run {run_dir.name}: another mqarbench process holds {run_dir / LOCK_FILE}; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def try_lock(run_dir: Path) -> int | None:
    """Take ``run_dir``'s lock without waiting: the descriptor that holds it (``os.close`` it to
    release), or None while another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
