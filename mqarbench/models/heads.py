"""Vocabulary logits only where they are scored.

A model may split its forward in two: ``hidden_states(input_ids (B, L)) -> (B, L, D)`` and
``logits(hidden (..., D)) -> (..., V)``, with ``forward(x) == logits(hidden_states(x))``. The
runner then projects onto the vocabulary only at labelled positions. Why it matters: at the
benchmark's vocabulary of 20,000 and d_model 128 the LM head is over 90% of a small model's FLOPs
and its (B, L, V) logits the largest tensor of a step, while MQAR labels a tenth of the positions.
A model without the split is used whole and gives the same numbers, only slower.
"""

from __future__ import annotations

import torch


def has_split_head(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "hidden_states", None)) and callable(getattr(model, "logits", None))


def logits_at(model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits at the positions where ``mask`` (B, L) is True, in row-major order: (N, V)."""
    if has_split_head(model):
        return model.logits(model.hidden_states(input_ids)[mask])  # (N, V)
    return model(input_ids)[mask]  # (B, L, V) -> (N, V)
