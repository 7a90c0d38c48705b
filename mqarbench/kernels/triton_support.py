"""The guarded Triton import the Triton kernels share, and where they launch.

Triton ships with CUDA builds of torch and is missing on CPU-only machines; there ``triton`` is
None, ``triton_available()`` says why and every op takes its other path.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

try:
    import triton
except Exception as err:  # noqa: BLE001 - any import failure means "no Triton path"
    triton = None
    _MISSING = f"triton not importable ({type(err).__name__})"
else:
    _MISSING = ""


def triton_available() -> tuple[bool, str]:
    """(True, "") when Triton imports (the kernels are defined), else (False, why)."""
    return triton is not None, _MISSING


def launch_device(t: torch.Tensor):
    """Triton launches on the current CUDA device, so make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()
