"""Checkpoints written atomically with a sha256 sidecar; a file that fails its check is never used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mqarbench.io import atomic_path, sha256_file, write_text_atomic


class CorruptCheckpoint(Exception):
    """The file does not match its recorded sha256 (truncated, modified, or its sidecar lost)."""


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` and its digest to ``path.sha256``, each atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest = sha256_file(tmp)
    write_text_atomic(_sidecar(path), digest + "\n")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The state saved at ``path``, None if there is none; CorruptCheckpoint if it fails its check."""
    path = Path(path)
    if not path.exists():
        return None
    sidecar = _sidecar(path)
    if not sidecar.exists():
        raise CorruptCheckpoint(f"{path}: no {sidecar.name} beside it")
    if sha256_file(path) != sidecar.read_text().strip():
        raise CorruptCheckpoint(f"{path}: sha256 differs from {sidecar.name}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a file that passed its digest but will not load
        raise CorruptCheckpoint(f"{path}: unreadable ({type(err).__name__}: {err})") from err


def remove_checkpoint(path: Path) -> None:
    for p in (Path(path), _sidecar(Path(path))):
        p.unlink(missing_ok=True)
