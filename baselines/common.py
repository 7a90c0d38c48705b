"""Pieces the table-configured baselines (pythia, hyena, rwkv) share."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mqarbench.errors import UserError
from mqarbench.models.adapter import ModelAdapter


class SplitHeadLM(nn.Module):
    """A language model in two halves, so the runner can project onto the vocabulary only at
    labelled positions (``mqarbench/models/heads.py``). Subclasses define ``hidden_states`` and
    an ``unembed`` linear layer."""

    unembed: nn.Linear

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., V)
        return self.unembed(hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, V)
        return self.logits(self.hidden_states(input_ids))


class TableAdapter(ModelAdapter):
    """An adapter whose configuration is a per-preset table merged over common settings, and
    whose module is ``lm_class(**config)``."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    common: ClassVar[dict[str, Any]] = {}
    lm_class: ClassVar[type[nn.Module]]

    def config(self, preset: str, vocab_size: int, max_len: int) -> dict[str, Any]:
        if preset not in self.presets:
            raise UserError(f"model '{self.name}': unknown preset '{preset}'; "
                            f"choose one of {', '.join(self.presets)}")
        return dict(self.common, **self.presets[preset], vocab_size=vocab_size, max_len=max_len)

    def build(self, preset: str, vocab_size: int, max_len: int) -> nn.Module:
        return self.lm_class(**self.config(preset, vocab_size, max_len))
