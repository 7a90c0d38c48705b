"""Check that a built module honours the adapter contract before anything trains on it."""

from __future__ import annotations

import torch

from mqarbench.errors import UserError


def check_forward(name: str, module: torch.nn.Module, vocab_size: int, max_len: int) -> None:
    """One short forward pass: input_ids (B, L) -> logits (B, L, V), floating point and finite."""
    device = next(module.parameters()).device
    length = min(max_len, 16)
    input_ids = torch.randint(4, vocab_size, (2, length), device=device)  # (B, L)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            logits = module(input_ids)
    except Exception as err:
        raise UserError(f"model '{name}': forward on input_ids of shape (2, {length}) failed: "
                        f"{type(err).__name__}: {err}") from err
    finally:
        module.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, length, vocab_size):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserError(f"model '{name}': forward must return logits of shape (B, L, V) = "
                        f"(2, {length}, {vocab_size}), got {shape}")
    if not logits.is_floating_point() or not torch.isfinite(logits).all():
        raise UserError(f"model '{name}': forward returned non-finite or non-float logits")
