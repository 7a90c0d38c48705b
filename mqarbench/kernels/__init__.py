"""Kernel dispatch: each op takes a fast library on CUDA and a pure-PyTorch reference elsewhere.

A module that dispatches defines ``kernel_choices(device) -> dict[op, KernelChoice]`` and its
forward takes exactly that choice, so what the results record is what ran.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from mqarbench.errors import UserError

_forced_reference = [False]


@dataclass(frozen=True)
class KernelChoice:
    """The implementation an op takes on a device."""

    path: str  # e.g. "mamba_ssm.selective_scan_fn", "sdpa", "reference"
    fast: bool
    missing: str = ""  # why the library's kernel is not taken (also on a fast fallback), with the fix


def use_reference() -> bool:
    """True inside ``force_reference()`` or when ``MQARBENCH_KERNELS=reference``."""
    return _forced_reference[0] or os.environ.get("MQARBENCH_KERNELS") == "reference"


@contextmanager
def force_reference() -> Iterator[None]:
    """Run every op on its reference path (parity tests)."""
    before = _forced_reference[0]
    _forced_reference[0] = True
    try:
        yield
    finally:
        _forced_reference[0] = before


def env_choice(variable: str, values: tuple[str, ...]) -> str:
    """The value of a path-picking environment variable (unset: ``auto``), one of ``values``."""
    chosen = os.environ.get(variable) or "auto"
    if chosen not in values:
        raise UserError(f"{variable}={chosen!r}: use one of {', '.join(values)} (or leave it unset: auto)")
    return chosen


def module_device(module: torch.nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def kernel_choices(module: torch.nn.Module, device: torch.device | None = None) -> dict[str, KernelChoice]:
    """Merge the choices of every dispatching submodule on ``device`` (default: the module's;
    a module built on the meta device can say what it would take on another)."""
    device = module_device(module) if device is None else device
    merged: dict[str, KernelChoice] = {}
    for sub in module.modules():
        report = getattr(sub, "kernel_choices", None)
        if callable(report):
            for op, choice in report(device).items():
                # Layers may differ (e.g. global selection in some layers); keep the slowest.
                if op not in merged or (merged[op].fast and not choice.fast):
                    merged[op] = choice
    return merged


def kernel_paths(module: torch.nn.Module) -> dict[str, str]:
    """Which implementation each op of ``module`` takes on its current device."""
    return {op: choice.path for op, choice in sorted(kernel_choices(module).items())}


def slow_paths(module: torch.nn.Module) -> list[str]:
    """Ops that would run a reference path although the module sits on CUDA, with the fix."""
    if module_device(module).type != "cuda":
        return []
    return [f"{op}: {choice.missing or 'reference path forced'}"
            for op, choice in sorted(kernel_choices(module).items()) if not choice.fast]


def at_least_fp32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """All in one dtype for a reference computation: bf16/fp16 inputs are computed in fp32; if any
    input is fp64, all are (exact parity tests, and a caller mixing fp32 activations with an fp64
    gate)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return [t.to(dtype) for t in tensors]
