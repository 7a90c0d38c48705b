"""Mamba adapters: build, train a step, causality, paper sizes, Global Selection, hidden attention."""

from __future__ import annotations

import json
import math

import pytest
import torch

from baselines.global_mamba import GlobalMamba, GlobalSelectionMixer
from baselines.mamba import Mamba, Mamba2xState, Mamba4xState, MambaMixer
from mqarbench.analysis.hidden_attention import (
    channel_attention, hidden_attention, supports_hidden_attention)
from mqarbench.errors import UserError
from mqarbench.kernels import kernel_paths
from mqarbench.kernels.selective_scan import selective_scan_ref

ADAPTERS = [Mamba, Mamba2xState, Mamba4xState, GlobalMamba]
VOCAB, MAX_LEN = 37, 48


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request):
    return request.param()


def test_tiny_forward_backward_shape_and_finite_grads(adapter):
    torch.manual_seed(0)
    model = adapter.build("tiny", VOCAB, MAX_LEN)
    ids = torch.randint(0, VOCAB, (3, 40))
    logits = model(ids)
    assert logits.shape == (3, 40, VOCAB)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_changing_token_t_never_changes_earlier_logits(adapter):
    torch.manual_seed(1)
    model = adapter.build("tiny", VOCAB, MAX_LEN).double()
    ids = torch.randint(0, VOCAB, (1, 30))
    changed = ids.clone()
    changed[0, 17] = (ids[0, 17] + 5) % VOCAB
    with torch.no_grad():
        before, after = model(ids), model(changed)
    # exact up to fp64 round-off (the FFT long conv mixes every position's rounding)
    torch.testing.assert_close(before[:, :17], after[:, :17], rtol=0, atol=1e-12)
    assert (before[:, 17:] - after[:, 17:]).abs().max() > 1e-6


def closed_form_params(vocab, d, layers, n_state, d_conv=4, expand=2, long_kernel=0):
    """Mamba parameters counted by hand from the architecture."""
    e, r = expand * d, math.ceil(d / 16)
    per_layer = (d * 2 * e            # in_proj
                 + e * d_conv + e     # depthwise conv + bias
                 + e * (r + 2 * n_state)  # x_proj -> dt, B, C
                 + r * e + e          # dt_proj + bias
                 + e * n_state + e    # A_log, D
                 + e * d              # out_proj
                 + d                  # RMSNorm
                 + (e * long_kernel + e if long_kernel else 0))  # Global Selection conv + bias
    return vocab * d + layers * per_layer + d  # tied head, final norm


@pytest.mark.parametrize("cls,n_state,long_kernel", [
    (Mamba, 16, 0), (Mamba2xState, 32, 0), (Mamba4xState, 64, 0), (GlobalMamba, 16, 128)])
def test_paper_parameter_counts_on_meta_match_closed_form_and_paper(cls, n_state, long_kernel):
    with torch.device("meta"):
        model = cls().build("paper", 50277, 2048)
    count = sum(p.numel() for p in model.parameters())
    assert count == closed_form_params(50277, 768, 24, n_state, long_kernel=long_kernel)
    assert abs(count - cls.PAPER_PARAMS) / cls.PAPER_PARAMS < 0.02  # GPT-NeoX vocab as the paper


def test_config_is_json_and_state_size_counts_ssm_and_conv_windows():
    for cls in ADAPTERS:
        cfg = cls().config("paper", VOCAB, MAX_LEN)
        assert json.loads(json.dumps(cfg)) == cfg
    assert Mamba().state_size("paper", VOCAB, MAX_LEN) == 24 * 1536 * (16 + 3)
    assert Mamba4xState().state_size("paper", VOCAB, MAX_LEN) == 24 * 1536 * (64 + 3)
    assert GlobalMamba().state_size("paper", VOCAB, MAX_LEN) == 24 * 1536 * (16 + 3 + 127)


def test_unknown_preset_and_bad_layers_are_user_errors():
    with pytest.raises(UserError, match="preset 'huge'"):
        Mamba().config("huge", VOCAB, MAX_LEN)

    class BadLayers(GlobalMamba):
        global_selection_layers = (0, 5)

    with pytest.raises(UserError, match="global_selection_layers"):
        BadLayers().config("tiny", VOCAB, MAX_LEN)


def test_global_selection_layers_choose_which_mixers_are_gated():
    class FirstOnly(GlobalMamba):
        global_selection_layers = (0,)

    model = FirstOnly().build("tiny", VOCAB, MAX_LEN)
    kinds = [type(block.mixer) for block in model.layers]
    assert kinds == [GlobalSelectionMixer, MambaMixer]
    assert set(kernel_paths(model)) == {"add_rms_norm", "causal_conv1d", "selective_scan", "long_conv"}


def test_zero_long_conv_makes_delta_input_independent():
    # SiLU(0) = 0 removes W_dt dt from Delta: the mixer equals Mamba with dt_proj.weight = 0.
    torch.manual_seed(2)
    gated = GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=8).double()
    plain = MambaMixer(16, 4, 4, 2, 1).double()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items()
                           if not k.startswith("long_conv.")})
    with torch.no_grad():
        gated.long_conv.weight.zero_()
        gated.long_conv.bias.zero_()
        plain.dt_proj.weight.zero_()
    hidden = torch.randn(2, 12, 16, dtype=torch.float64)
    torch.testing.assert_close(gated(hidden), plain(hidden))
    with torch.no_grad():
        gated.long_conv.weight.normal_()
    assert (gated(hidden) - plain(hidden)).abs().max() > 1e-7


def test_global_selection_sees_tokens_beyond_the_short_conv():
    # Delta_t of Mamba's mixer depends on x_{t-3..t} only; the long conv reaches K-1 back.
    torch.manual_seed(3)
    gated = GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=32).double()
    plain = MambaMixer(16, 4, 4, 2, 1).double()
    hidden = torch.randn(1, 30, 16, dtype=torch.float64)
    far = hidden.clone()
    far[0, 5] += 1.0  # 20 steps before t = 25
    for mixer, moves in ((gated, True), (plain, False)):
        with torch.no_grad():
            dt_a, dt_b = mixer.ssm_inputs(hidden)["dt"], mixer.ssm_inputs(far)["dt"]
        assert bool((dt_a[..., 25] - dt_b[..., 25]).abs().max() > 1e-8) == moves
        torch.testing.assert_close(dt_a[..., :5], dt_b[..., :5])


def test_hidden_attention_reproduces_the_scan():
    torch.manual_seed(4)
    mixer = GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=8).double()
    inputs = mixer.ssm_inputs(torch.randn(1, 20, 16, dtype=torch.float64))
    alpha = channel_attention(inputs, mixer.dt_proj.bias.detach())  # (E, L, L)
    y_attention = torch.einsum("ets,es->et", alpha, inputs["u"][0])
    y_scan = selective_scan_ref(inputs["u"], inputs["dt"], inputs["A"], inputs["B"], inputs["C"],
                                delta_bias=mixer.dt_proj.bias, delta_softplus=True)[0]
    torch.testing.assert_close(y_attention, y_scan.detach())
    assert (alpha.triu(1) == 0).all()


def test_hidden_attention_maps_per_layer(adapter):
    model = adapter.build("tiny", VOCAB, MAX_LEN)
    assert supports_hidden_attention(model)
    maps = hidden_attention(model, torch.randint(0, VOCAB, (1, 24)))
    assert maps.shape == (2, 24, 24) and maps.dtype.name == "float32"
    assert (maps.sum(-1) > 0).all() and (maps[:, 0, 1:] == 0).all()
    with pytest.raises(ValueError, match="shape"):
        hidden_attention(model, torch.zeros(2, 24, dtype=torch.long))
    assert not supports_hidden_attention(torch.nn.Linear(2, 2))


def mixer_output_and_grads(mixer, hidden, autocast):
    hidden = hidden.detach().clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = mixer(hidden)
    out.float().square().mean().backward()
    grads = [hidden.grad] + [p.grad for p in mixer.parameters()]
    mixer.zero_grad(set_to_none=True)
    return out.float().detach(), grads


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["mamba", "global"])
@pytest.mark.parametrize("autocast,tol", [(False, 2e-3), (True, 6e-2)])
@pytest.mark.parametrize("deterministic", ["1", "0"])  # the default kernels, the libraries'
def test_fast_mixer_matches_reference_mixer_forward_and_grads(kind, autocast, tol, deterministic, monkeypatch):
    from mqarbench.kernels import force_reference, kernel_choices

    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", deterministic)
    torch.manual_seed(5)
    if kind == "mamba":
        mixer = MambaMixer(128, 16, 4, 2, 8).cuda()
        want = {"mamba_inner"} if deterministic == "0" else {"causal_conv1d", "selective_scan"}
        assert set(kernel_choices(mixer)) == want
    else:
        mixer = GlobalSelectionMixer(128, 16, 4, 2, 8, long_kernel=64).cuda()
    assert all(choice.fast for choice in kernel_choices(mixer).values()), kernel_choices(mixer)
    hidden = torch.randn(2, 256, 128, device="cuda")
    fast, fast_grads = mixer_output_and_grads(mixer, hidden, autocast)
    with force_reference():
        ref, ref_grads = mixer_output_and_grads(mixer, hidden, autocast)
    scale = ref.abs().max().item()
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol * scale)
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        torch.testing.assert_close(g_fast.float(), g_ref.float(), rtol=tol,
                                   atol=tol * g_ref.abs().max().item())
