"""Write a site into a staging directory and swap it in whole: no half-built site is ever seen."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mqarbench.errors import UserError

MARKER = ".mqarbench-site"  # marks a directory this builder owns and may replace


@contextmanager
def staged_site(out_dir: Path) -> Iterator[Path]:
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise UserError(f"--out {out_dir}: exists and is not a leaderboard site; "
                        "choose an empty or new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        (staging / MARKER).write_text("built by mqarbench leaderboard build; replaced on rebuild\n")
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
