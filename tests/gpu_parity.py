"""A whole model's fast (GPU kernel) path against its reference path: outputs and every gradient."""

from __future__ import annotations

import torch

from mqarbench.kernels import force_reference, slow_paths


def assert_fast_matches_reference(model: torch.nn.Module, vocab_size: int, length: int = 256,
                                  out_tol: float = 2e-2, grad_tol: float = 5e-2) -> None:
    """fp32 forward and backward of a random batch on both paths; relative max errors, every
    parameter's gradient reported on one line when any is off."""
    assert slow_paths(model) == []
    input_ids = torch.randint(0, vocab_size, (4, length), device="cuda")  # (B, L)
    fast = model(input_ids)  # fp32: the kernels' own rounding (tf32 inside Triton) stays small
    fast.square().mean().backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with force_reference():
        reference = model(input_ids)
        reference.square().mean().backward()
    assert ((fast - reference).abs().max() / reference.abs().max()).item() < out_tol
    errors = {}
    for (name, param), fast_grad in zip(model.named_parameters(), fast_grads):
        scale = param.grad.abs().max().clamp_min(1e-8)
        errors[name] = ((fast_grad - param.grad).abs().max() / scale).item()
    assert max(errors.values()) < grad_tol, {k: f"{v:.1e}" for k, v in errors.items() if v >= grad_tol}
