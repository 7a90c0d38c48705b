"""Where a run ran: device choice and the versions results record."""

from __future__ import annotations

import torch

from mqarbench import __version__


def pick_device() -> torch.device:
    """The first visible CUDA device, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def environment(device: torch.device) -> dict[str, str]:
    return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda or "",
            "mqarbench_version": __version__,
            "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else ""}


def peak_memory_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
