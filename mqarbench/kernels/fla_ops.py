"""Guarded, lazy imports of flash-linear-attention's chunked Triton ops.

fla pulls in Triton, which costs seconds and needs CUDA to be useful, so nothing is imported
until a CUDA forward (or a kernel report) asks for an op.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable


@functools.lru_cache(maxsize=None)
def fla_op(module: str, name: str) -> tuple[Callable | None, str]:
    """``(fn, "")`` for ``module.name`` when importable, else ``(None, why with the fix)``."""
    try:
        return getattr(importlib.import_module(module), name), ""
    except Exception as err:  # ImportError, or Triton failing to initialise
        return None, (f"flash-linear-attention not importable ({type(err).__name__}; "
                      "pip install flash-linear-attention)")
