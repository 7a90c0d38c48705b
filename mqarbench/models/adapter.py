"""The adapter protocol: how a model enters the benchmark.

An adapter is a small class. Given a vocabulary size, a maximum sequence length and a size
preset, it builds a ``torch.nn.Module`` mapping ``input_ids (B, L)`` (int64) to logits
``(B, L, V)``, and describes itself. The runner treats every model the same way through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

PRESETS = ("tiny", "small", "paper")


@dataclass(frozen=True)
class ModelInfo:
    """What the leaderboard shows about a built model."""

    name: str
    family: str  # "attention" | "ssm" | "linear-attention" | "long-convolution" | ...
    params: int
    state_size: int  # recurrent state per sequence, in numbers (0 where the state grows with L)
    config: dict[str, Any] = field(default_factory=dict)
    citation: str = ""


class ModelAdapter:
    """Subclass this, set the class attributes, implement ``config`` and ``build``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    family: ClassVar[str] = ""
    citation: ClassVar[str] = ""

    def config(self, preset: str, vocab_size: int, max_len: int) -> dict[str, Any]:
        """The JSON-serialisable configuration built at ``preset`` (part of the run id)."""
        raise NotImplementedError

    def build(self, preset: str, vocab_size: int, max_len: int) -> torch.nn.Module:
        """A fresh module: ``forward(input_ids (B, L)) -> logits (B, L, vocab_size)``."""
        raise NotImplementedError

    def state_size(self, preset: str, vocab_size: int, max_len: int) -> int:
        """Recurrent state per sequence in numbers; 0 for models whose state grows with L."""
        return 0
