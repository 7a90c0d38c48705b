"""Kernel warm-up before worker processes: one step per distinct model and configuration."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mqarbench.runner import warmup


def _spec(model: str, config: dict) -> SimpleNamespace:
    return SimpleNamespace(model=model, adapter_name=model, model_config=config, preset="tiny",
                           vocab_size=64, max_len=16)


def test_each_distinct_model_config_is_built_and_stepped_once(monkeypatch):
    built = []
    real = warmup.load_adapter

    def counting(ref):
        built.append(ref)
        return real(ref)

    monkeypatch.setattr(warmup, "load_adapter", counting)
    specs = [_spec("mamba", {"d": 1}), _spec("mamba", {"d": 1}), _spec("pythia", {"d": 1}),
             _spec("mamba", {"d": 2})]  # same adapter, another configuration: warmed again
    lines = []
    assert warmup.warm_kernels(specs, torch.device("cpu"), report=lines.append) == 3
    assert built == ["mamba", "pythia", "mamba"]
    assert len(lines) == 3 and lines[1].startswith("kernels of pythia ready in")
