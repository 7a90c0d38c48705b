"""Describe an adapter at a preset without training it: parameters, state size, kernel paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mqarbench.kernels.cross_entropy import training_kernel_choices
from mqarbench.models.adapter import ModelAdapter

DEFAULT_VOCAB = 20_000
DEFAULT_MAX_LEN = 512


@dataclass(frozen=True)
class ModelInfo:
    """What the leaderboard and `models list/show` show about a built model."""

    name: str
    family: str  # one of mqarbench.models.FAMILIES
    params: int
    state_size: int  # recurrent state per sequence, in numbers (0 where the state grows with L)
    config: dict[str, Any] = field(default_factory=dict)
    citation: str = ""
    paper_params: int | None = None


def count_params(adapter: ModelAdapter, preset: str, vocab_size: int = DEFAULT_VOCAB,
                 max_len: int = DEFAULT_MAX_LEN) -> int:
    """Parameter count, built on the meta device so a 150M model allocates nothing."""
    return sum(p.numel() for p in meta_build(adapter, preset, vocab_size, max_len).parameters())


def meta_build(adapter: ModelAdapter, preset: str, vocab_size: int, max_len: int) -> torch.nn.Module:
    """The preset's model on the meta device: its shapes and structure, no memory."""
    with torch.device("meta"):
        return adapter.build(preset, vocab_size, max_len)


def describe(adapter: ModelAdapter, preset: str, vocab_size: int = DEFAULT_VOCAB,
             max_len: int = DEFAULT_MAX_LEN) -> ModelInfo:
    return ModelInfo(
        name=adapter.name,
        family=adapter.family,
        params=count_params(adapter, preset, vocab_size, max_len),
        state_size=adapter.state_size(preset, vocab_size, max_len),
        config=adapter.config(preset, vocab_size, max_len),
        citation=adapter.citation,
        paper_params=adapter.PAPER_PARAMS,
    )


def available_kernels(adapter: ModelAdapter, device: str, preset: str = "tiny",
                      vocab_size: int = DEFAULT_VOCAB, max_len: int = DEFAULT_MAX_LEN) -> dict[str, str]:
    """Which path each op would take on ``device`` here for the preset's model (built on the
    meta device: a choice may depend on a layer's width, as Global Selection's long conv does)."""
    module = meta_build(adapter, preset, vocab_size, max_len)
    choices = training_kernel_choices(module, torch.device(device))
    return {op: choice.path + (f" ({choice.missing})" if choice.missing else "")
            for op, choice in sorted(choices.items())}
