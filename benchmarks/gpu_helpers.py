"""What the GPU benchmark scripts share: timing a call with CUDA events (bench_models.py,
bench_scan.py) and one model set up on a task's training data as a run would train it
(grad_determinism.py, profile_step.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from mqarbench.data import Dataset
from mqarbench.models.registry import load_adapter
from mqarbench.runner.hparams import HParams
from mqarbench.runner.plan import RunSpec, plan_run
from mqarbench.runner.train import TrainData


def cuda_ms(call: Callable[[], object], reps: int, warmup: int = 0) -> list[float]:
    """Milliseconds of each of ``reps`` calls, timed with CUDA events after ``warmup`` untimed
    calls; the caller picks its statistic (the scripts' medians differ and their tables with them)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def model_and_data(model_name: str, ds: Dataset, preset: str, hp: HParams, device: torch.device,
                   scratch: Path, seed: int | None = None) -> tuple[RunSpec, TrainData, torch.nn.Module]:
    """Seed 0's run of ``model_name`` on ``ds`` (planned under ``scratch``), its training data on
    ``device`` and its model there, built after ``torch.manual_seed(seed)`` when a seed is given
    (otherwise from torch's generator as it stands)."""
    adapter = load_adapter(model_name)
    spec = plan_run(adapter, model_name, ds, [], preset, hp, 0, scratch)
    data = TrainData.load(spec, device)
    if seed is not None:
        torch.manual_seed(seed)
    model = adapter.build(preset, spec.vocab_size, spec.max_len).to(device)
    return spec, data, model
