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


# nvidia-smi memory per `small` run sharing an H100: 8 runs held 74-79 GiB (each run's own peak is
# 2-5 GiB; the rest is its process's CUDA context and caching allocator), see docs/benchmarks.md
GIB_PER_SHARED_RUN = 9.5
MAX_SHARED_RUNS = 8  # the most measured; beyond it the GPU is already busy all the time


def default_workers_per_gpu(preset: str, gpu_memory_gib: float | None) -> int:
    """Runs sharing one GPU when ``--workers-per-gpu`` is not given: one on a CPU and at preset
    ``paper`` (a run there fills a GPU), else as many as the GPU's memory holds, at most 8."""
    if gpu_memory_gib is None or preset == "paper":
        return 1
    return max(1, min(MAX_SHARED_RUNS, int(gpu_memory_gib // GIB_PER_SHARED_RUN)))


def gpu_memory_gib() -> float | None:
    """Total memory of the first visible GPU, None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30
