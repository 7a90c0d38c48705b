"""Stacked models: K members in one computation give each member's own outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from mqarbench.models.registry import BUILTINS, load_adapter
from mqarbench.models.stacked import can_stack, stack_parameters

STACKABLE = ("mamba", "mamba_2x_state", "mamba_4x_state")
VOCAB, LENGTH = 96, 32


def members(model: str, device: str, k: int = 3) -> list[torch.nn.Module]:
    out = []
    for seed in range(k):  # different seeds: different weights per member
        torch.manual_seed(seed)
        out.append(load_adapter(model).build("tiny", VOCAB, LENGTH).to(device))
    return out


def stacked_against_alone(models: list[torch.nn.Module], device: str) -> tuple[float, float]:
    """Largest relative differences of the logits and of the gradients (per tensor's scale)."""
    params = stack_parameters(models)
    ids = torch.randint(0, VOCAB, (len(models), 4, LENGTH), device=device)  # (K, B, L)
    hidden = models[0].stacked_hidden_states(params, ids)  # (K, B, L, D)
    logits = models[0].stacked_logits(params, hidden.flatten(1, 2))  # (K, B*L, V)
    logits.square().mean().mul(len(models)).backward()
    worst_out = worst_grad = 0.0
    for k, model in enumerate(models):
        alone = model(ids[k]).flatten(0, 1)  # (B*L, V)
        worst_out = max(worst_out, float((logits[k] - alone).abs().max() / alone.abs().max()))
        alone.square().mean().backward()
        for name, p in model.named_parameters():
            scale = float(p.grad.abs().max()) or 1.0
            worst_grad = max(worst_grad, float((params[name].grad[k] - p.grad).abs().max()) / scale)
    return worst_out, worst_grad


@pytest.mark.parametrize("model", STACKABLE)
def test_stacked_members_match_each_model_alone(model):
    out, grad = stacked_against_alone(members(model, "cpu"), "cpu")
    assert out < 1e-5 and grad < 1e-4, (out, grad)


def test_a_member_with_other_weights_is_told_apart():
    """The check above can fail: member 1 computed with member 0's weights is far off."""
    models = members("mamba", "cpu")
    models[1].load_state_dict(models[0].state_dict())
    params = stack_parameters(models)
    fresh = members("mamba", "cpu")[1]
    ids = torch.randint(0, VOCAB, (3, 2, LENGTH))
    hidden = models[0].stacked_hidden_states(params, ids)
    got = models[0].stacked_logits(params, hidden.flatten(1, 2))[1]
    assert not torch.allclose(got, fresh(ids[1]).flatten(0, 1), rtol=1e-3, atol=1e-3)


def test_only_the_plain_mamba_mixer_stacks():
    stackable = {m for m in BUILTINS if can_stack(load_adapter(m).build("tiny", VOCAB, LENGTH))}
    assert stackable == set(STACKABLE)  # global_mamba's gate changes what the scan sees


@pytest.mark.gpu
@pytest.mark.parametrize("model", STACKABLE)
def test_stacked_members_match_each_model_alone_on_gpu(model):
    """mamba_ssm's scan with the members as channel groups and causal_conv1d over the folded
    channels, against each model's own fused mamba_inner_fn, in fp32."""
    out, grad = stacked_against_alone(members(model, "cuda"), "cuda")
    assert out < 1e-3 and grad < 1e-2, (out, grad)
