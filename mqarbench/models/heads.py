"""Vocabulary logits only where they are scored (an option a model may take).

A model may split its forward in two: ``hidden_states(input_ids (B, L)) -> (B, L, D)`` and
``logits(hidden (..., D)) -> (..., V)``, with ``forward(x) == logits(hidden_states(x))``. The
runner then projects onto the vocabulary only at labelled positions. Why it matters: at the
benchmark's vocabulary of 20,000 and d_model 128 the LM head is over 90% of a small model's FLOPs
and its (B, L, V) logits the largest tensor of a step, while MQAR labels a tenth of the positions.
A model without the split is used whole and gives the same numbers, only slower.
``SplitLM`` is the split written once: subclass it, define ``hidden_states`` and ``unembed``.
"""

from __future__ import annotations

import torch
from torch import nn


class SplitLM(nn.Module):
    """A language model in two halves. Subclasses define ``hidden_states`` and an ``unembed``
    linear layer (or override ``logits``, e.g. to reuse the embedding matrix)."""

    unembed: nn.Linear

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., V)
        return self.unembed(hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, V)
        return self.logits(self.hidden_states(input_ids))


def has_split_head(model: nn.Module) -> bool:
    return callable(getattr(model, "hidden_states", None)) and callable(getattr(model, "logits", None))


def logits_at(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits at the positions where ``mask`` (B, L) is True, in row-major order: (N, V)."""
    if has_split_head(model):
        return model.logits(model.hidden_states(input_ids)[mask])  # (N, V)
    return model(input_ids)[mask]  # (B, L, V) -> (N, V)
