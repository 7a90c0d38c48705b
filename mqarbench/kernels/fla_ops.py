"""Guarded, lazy imports of flash-linear-attention's chunked Triton ops.

fla pulls in Triton, which costs seconds and needs CUDA to be useful, so nothing is imported
until a CUDA forward (or a kernel report) asks for an op.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable

import torch

from mqarbench.kernels import KernelChoice, use_reference


@functools.lru_cache(maxsize=None)
def fla_op(module: str, name: str) -> tuple[Callable | None, str]:
    """``(fn, "")`` for ``module.name`` when importable, else ``(None, why with the fix)``."""
    try:
        return getattr(importlib.import_module(module), name), ""
    except Exception as err:  # ImportError, or Triton failing to initialise
        return None, (f"flash-linear-attention not importable ({type(err).__name__}; "
                      "pip install flash-linear-attention)")


def choose(device: torch.device, op: tuple[str, str], fast: Callable, reference: Callable,
           ready: Callable[[], tuple[Callable | None, str]] | None = None,
           fallback: Callable | None = None) -> tuple[Callable, KernelChoice]:
    """``fast`` (named after ``op`` = (module, name)) on CUDA when that op imports and the reference
    is not forced; where CUDA is there but the op is not, ``fallback`` (a fast pure-PyTorch path,
    named ``torch.<its name>``) if given, else ``reference``, either with the reason.
    ``ready`` replaces fla's import check (for ops of other libraries)."""
    label = f"reference.{reference.__name__}"
    if use_reference() or device.type != "cuda":
        return reference, KernelChoice(label, False)
    kernel, missing = (ready or (lambda: fla_op(*op)))()
    if kernel is None and fallback is not None:
        return fallback, KernelChoice(f"torch.{fallback.__name__}", True, missing)
    if kernel is None:
        return reference, KernelChoice(label, False, missing)
    return fast, KernelChoice(".".join(op), True)
