"""Several runs of one architecture as one computation: weights stacked on a member dim (K, ...).

At preset ``small`` a run's kernels are too small to fill a GPU. K runs of the same model (other
seeds, learning rates or training tasks) computed as one batched forward and backward make each
kernel K times larger: linear layers become batched matmuls, per-channel kernels (short conv,
selective scan) take the members folded into their channels. A model opts in by defining

    can_stack: bool                                             # True when the two below apply
    stacked_hidden_states(params, input_ids (K, B, L)) -> (K, B, L, D)
    stacked_logits(params, hidden (K, N, D)) -> (K, N, V)

where ``params`` maps the module's own parameter names (``named_parameters()``) to tensors
(K, *shape). Member k must compute what the module computes with the weights ``params[name][k]``;
the runner (``mqarbench/runner/stacked.py``) trains such models K runs at a time, and the pack
tests check each member against its run trained alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Params = dict[str, torch.Tensor]  # parameter name -> (K, *shape)


def can_stack(model: nn.Module) -> bool:
    return bool(getattr(model, "can_stack", False)) and callable(getattr(model, "stacked_hidden_states", None))


def stack_parameters(models: list[nn.Module]) -> Params:
    """Leaf tensors (K, *shape) holding the members' weights, in ``named_parameters`` order (tied
    weights once)."""
    names = [name for name, _ in models[0].named_parameters()]
    params = [dict(m.named_parameters()) for m in models]
    return {n: torch.stack([p[n].detach() for p in params]).requires_grad_(True) for n in names}


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-member ``F.linear``: x (K, T, in), weight (K, out, in), bias (K, out) -> (K, T, out)."""
    out = torch.matmul(x, weight.transpose(1, 2))
    return out if bias is None else out + bias[:, None, :]


def embedding(input_ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-member lookup: input_ids (K, B, L), weight (K, V, D) -> (K, B, L, D), as one gather into
    the members' tables laid end to end (whose backward is one embedding backward)."""
    members, vocab, dim = weight.shape
    offsets = torch.arange(members, device=input_ids.device).view(members, 1, 1) * vocab
    return F.embedding(input_ids + offsets, weight.reshape(members * vocab, dim))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-member RMSNorm over the last dim: x (K, ..., D), weight (K, D)."""
    scale = weight.view(weight.shape[0], *([1] * (x.dim() - 2)), weight.shape[1])
    return F.rms_norm(x, x.shape[-1:], None, eps) * scale


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """(K, B, L, C) -> (B, K * C, L): the members folded into the channels of per-channel kernels."""
    members, batch, length, channels = x.shape
    return x.permute(1, 0, 3, 2).reshape(batch, members * channels, length)


def from_channels(x: torch.Tensor, members: int) -> torch.Tensor:
    """(B, K * C, L) -> (K, B * L, C), the layout of the members' batched matmuls."""
    batch, _, length = x.shape
    return x.view(batch, members, -1, length).permute(1, 0, 3, 2).reshape(members, batch * length, -1)
