"""Hyena's reference-choice variants (baselines.hyena): what each changes, and that the board's
`hyena` is untouched by them."""

from __future__ import annotations

import math

import torch
from torch import nn

from baselines.hyena import Hyena, HyenaReferenceInit, HyenaW14
from mqarbench.models.checks import check_forward

VOCAB, MAX_LEN = 40, 64


def build(cls: type[Hyena], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().create_model(cls().configure("tiny", VOCAB, MAX_LEN))


def test_w14_changes_only_the_sine_frequency():
    base = Hyena().config("small", VOCAB, MAX_LEN)
    w14 = HyenaW14().config("small", VOCAB, MAX_LEN)
    assert base["sin_freq"] == 1.0  # the board's hyena keeps its config (and so its run ids)
    assert {k: v for k, v in w14.items() if base.get(k) != v} == {"sin_freq": 14.0}
    freq = build(HyenaW14).blocks[0].mixer.filter.mlp[1].freq
    assert torch.all(freq == 14.0)


def test_reference_init_draws_every_linear_small_and_starts_the_filters_near_zero():
    ours, ref = build(Hyena), build(HyenaReferenceInit)
    cfg = HyenaReferenceInit().configure("tiny", VOCAB, MAX_LEN)
    residual_outs = {id(m) for b in ref.blocks for m in (b.mixer.out_proj, b.mlp[-1])}
    for module in ref.modules():
        if isinstance(module, nn.Linear) and module is not ref.unembed:
            want = 0.02 / (math.sqrt(2 * cfg.n_layers) if id(module) in residual_outs else 1.0)
            assert abs(float(module.weight.std()) - want) < 0.25 * want, module
            assert module.bias is None or not module.bias.any()
    length, cpu = 64, torch.device("cpu")
    with torch.no_grad():
        h_ours = ours.blocks[0].mixer.filter(length, cpu).abs().mean()
        h_ref = ref.blocks[0].mixer.filter(length, cpu).abs().mean()
    assert h_ref < 0.1 * h_ours  # the implicit filters start near zero
    assert ref.unembed.weight is ref.embed.weight  # still tied


def test_variants_are_well_formed_models_with_their_own_names():
    names = {Hyena.name}
    for cls in (HyenaW14, HyenaReferenceInit):
        check_forward(cls.name, build(cls), VOCAB, MAX_LEN)  # shapes, causality, split head
        assert cls.name not in names
        names.add(cls.name)
