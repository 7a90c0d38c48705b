"""Compile every model's GPU kernels once, here, before worker processes start.

Triton kernels (flash-linear-attention's RWKV) are compiled and autotuned on first use: minutes
on a fresh machine. K workers starting together would each do it at once, competing for the
same CPUs, and no run would finish an epoch for many minutes. One forward and backward pass per
distinct model in this process fills Triton's on-disk cache (``TRITON_CACHE_DIR``, by default
``~/.triton/cache``); the workers on this machine then read it.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import torch

from mqarbench.models.registry import load_adapter
from mqarbench.runner.evaluate import autocast
from mqarbench.runner.plan import RunSpec

WARM_BATCH = 2


def warm_kernels(specs: list[RunSpec], device: torch.device,
                 report: Callable[[str], None] = print) -> int:
    """One training-shaped step per distinct (model, config); returns how many were warmed."""
    distinct: dict[tuple[str, str], RunSpec] = {}
    for spec in specs:
        distinct.setdefault((spec.model, json.dumps(spec.model_config, sort_keys=True)), spec)
    for spec in distinct.values():
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = load_adapter(spec.model).build(spec.preset, spec.vocab_size, spec.max_len).to(device)
        x = torch.randint(0, spec.vocab_size, (WARM_BATCH, spec.max_len), device=device)  # (B, L)
        with autocast(device):
            logits = model(x)  # (B, L, V)
        logits.float().logsumexp(-1).mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        del model, logits
        report(f"kernels of {spec.adapter_name} ready in {time.perf_counter() - t0:.1f}s")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return len(distinct)
