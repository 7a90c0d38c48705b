"""Check that a built module honours the adapter contract before anything trains on it.

``run``/``train`` call ``check_forward`` on every model they build, and ``models show`` calls it
too, so a model that passes ``show`` passes the run's checks: logits of shape (B, L, V), finite,
causal (changing the last token leaves the earlier logits as they were), and, for a module with
the ``hidden_states``/``logits`` split, ``forward(x) == logits(hidden_states(x))``.
"""

from __future__ import annotations

import torch

from mqarbench.errors import UserError
from mqarbench.models.heads import has_split_head

PROBE_LEN = 16


def _tolerance(logits: torch.Tensor) -> float:
    """How far two evaluations of the same causal prefix may differ: round-off only. FFT
    convolutions mix in ~1e-7 relative noise from every position; under bf16 autocast one
    rounding step of the logits is 2^-8 of their scale."""
    eps = torch.finfo(logits.dtype).eps
    return max(2 * eps, 1e-4) * float(logits.abs().max()) + 1e-6


def _device(module: torch.nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    tensor = tensor if tensor is not None else next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _forward(name: str, module: torch.nn.Module, input_ids: torch.Tensor, what: str) -> torch.Tensor:
    try:
        return module(input_ids)
    except UserError:  # already one line naming its fix (e.g. an environment variable's values)
        raise
    except Exception as err:
        raise UserError(f"model '{name}': forward on {what} input_ids of shape {tuple(input_ids.shape)} "
                        f"failed: {type(err).__name__}: {err}") from err


def check_forward(name: str, module: torch.nn.Module, vocab_size: int, max_len: int) -> None:
    """A short forward pass, then the same input with its last token changed: shape, values,
    causality and the split head, each a one-line UserError naming the fix."""
    device = _device(module)
    length = min(max_len, PROBE_LEN)
    low = 4 if vocab_size > 5 else 0  # skip the special tokens where there are others
    input_ids = torch.randint(low, vocab_size, (2, length), device=device)  # (B, L)
    was_training = module.training
    module.eval()  # no dropout: two forwards of one prefix must agree
    try:
        with torch.no_grad():
            logits = _forward(name, module, input_ids, "random")
            _check_logits(name, logits, length, vocab_size)
            if length >= 2 and vocab_size >= 2:
                changed = input_ids.clone()
                changed[:, -1] = (input_ids[:, -1] - low + 1) % (vocab_size - low) + low
                _check_causal(name, logits, _forward(name, module, changed, "changed"))
            _check_split(name, module, input_ids, logits)
    finally:
        module.train(was_training)


def _check_logits(name: str, logits: object, length: int, vocab_size: int) -> None:
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, length, vocab_size):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserError(f"model '{name}': forward must return logits of shape (B, L, V) = "
                        f"(2, {length}, {vocab_size}), got {shape}")
    if not logits.is_floating_point() or not torch.isfinite(logits).all():
        raise UserError(f"model '{name}': forward returned non-finite or non-float logits; return float "
                        "logits (B, L, V) and check the model's initialisation")


def _check_causal(name: str, logits: torch.Tensor, changed: torch.Tensor) -> None:
    drift = float((changed[:, :-1].float() - logits[:, :-1].float()).abs().max())
    if drift > _tolerance(logits):
        raise UserError(f"model '{name}': forward sees the future: changing the last token changed the "
                        f"logits at earlier positions by up to {drift:.3g}; make position t depend only on "
                        "tokens up to t (causal masks, left-padded convolutions, no bidirectional layers)")


def _check_split(name: str, module: torch.nn.Module, input_ids: torch.Tensor, logits: torch.Tensor) -> None:
    halves = [m for m in ("hidden_states", "logits") if callable(getattr(module, m, None))]
    if len(halves) == 1:
        missing = {"hidden_states", "logits"} - set(halves)
        raise UserError(f"model '{name}': the module defines {halves[0]} but not {missing.pop()}; define both "
                        "(see mqarbench.models.SplitLM) or neither")
    if not has_split_head(module):
        return
    try:
        split = module.logits(module.hidden_states(input_ids))
    except Exception as err:
        raise UserError(f"model '{name}': logits(hidden_states(input_ids)) failed: "
                        f"{type(err).__name__}: {err}; hidden_states must return (B, L, D) that logits "
                        "maps to (B, L, V)") from err
    if tuple(split.shape) != tuple(logits.shape) or \
            float((split.float() - logits.float()).abs().max()) > _tolerance(logits):
        raise UserError(f"model '{name}': logits(hidden_states(x)) differs from forward(x); make forward "
                        "return self.logits(self.hidden_states(x)) (as mqarbench.models.SplitLM does)")
