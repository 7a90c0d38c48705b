"""Mamba-2, Gated DeltaNet, RWKV-7, GLA and DeltaNet adapters: shapes, causality, training,
parameter counts, state sizes against the carried state, stepping against the sequence forward."""

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.deltanet import DeltaNet, GatedDeltaNet
from baselines.gla import GLA
from baselines.mamba2 import Mamba2
from baselines.rwkv7 import RWKV7
from mqarbench.errors import UserError
from mqarbench.kernels import kernel_paths
from mqarbench.models.describe import count_params
from mqarbench.models.registry import list_adapters, load_adapter
from gpu_parity import assert_fast_matches_reference

ADAPTERS = [Mamba2(), GatedDeltaNet(), RWKV7(), GLA(), DeltaNet()]
VOCAB, MAX_LEN = 50, 64


def build_active(adapter, dtype=torch.float32, seed=0):
    """A tiny model with every parameter nudged off its initial value: RWKV-7 starts its output
    projections at zero, which would hide a causality leak behind them."""
    torch.manual_seed(seed)
    model = adapter.build("tiny", VOCAB, MAX_LEN).to(dtype)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request):
    return request.param


def test_registered_by_entry_point():
    assert {a.name for a in ADAPTERS} <= set(list_adapters())
    assert all(type(load_adapter(a.name)) is type(a) for a in ADAPTERS)


def test_forward_shape_and_finite_grads(adapter):
    model = build_active(adapter)
    ids = torch.randint(0, VOCAB, (3, 40))
    logits = model(ids)
    assert logits.shape == (3, 40, VOCAB)
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert all(param.grad.abs().sum() > 0 for param in model.parameters())


def test_changing_token_t_never_changes_earlier_logits(adapter):
    model = build_active(adapter, torch.float64, seed=1)
    ids = torch.randint(0, VOCAB, (2, 40))
    changed = ids.clone()
    changed[:, 25] = (ids[:, 25] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(after[:, :25], before[:, :25], atol=1e-12, rtol=0)
    assert (after[:, 26:] - before[:, 26:]).abs().max() > 1e-6  # and later positions do see it


def test_a_training_step_lowers_the_loss(adapter):
    torch.manual_seed(2)
    model = adapter.build("tiny", VOCAB, MAX_LEN)
    ids = torch.randint(0, VOCAB, (4, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(ids)[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_unknown_preset_is_a_user_error(adapter):
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        adapter.config("huge", VOCAB, MAX_LEN)


# ---- stepping one token at a time carries exactly the state that state_size counts ----

def stepped(step, xs, state):
    outputs = []
    for t in range(xs.shape[1]):
        out, state = step(xs[:, t], state)
        outputs.append(out)
    return torch.stack(outputs, dim=1), state


def numel_per_sequence(state) -> int:
    if isinstance(state, torch.Tensor):
        return state[0].numel()
    values = state.values() if isinstance(state, dict) else state
    return sum(numel_per_sequence(v) for v in values)


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if a.name != "rwkv7"], ids=lambda a: a.name)
def test_mixer_step_loop_reproduces_the_sequence_forward_and_state_size(adapter):
    model = build_active(adapter, torch.float64, seed=3)
    blocks = getattr(model, "blocks", None) or model.layers
    xs = torch.randn(2, 23, 64, dtype=torch.float64)
    total = 0
    for block in blocks:
        mixer = block.mixer
        with torch.no_grad():
            expected = mixer(xs)
            got, state = stepped(mixer.step, xs, mixer.init_state(2, xs.device, xs.dtype))
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
        total += numel_per_sequence(state)
    assert total == adapter.state_size("tiny", VOCAB, MAX_LEN)


def test_rwkv7_step_loop_reproduces_the_sequence_forward_and_state_size():
    model = build_active(RWKV7(), torch.float64, seed=4)
    ids = torch.randint(0, VOCAB, (2, 23))
    with torch.no_grad():
        expected = model.hidden_states(ids)
        got, states = stepped(model.step_hidden, ids, model.init_states(2, ids.device, torch.float64))
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    assert numel_per_sequence(states) == RWKV7().state_size("tiny", VOCAB, MAX_LEN)


def test_rwkv7_head_norm_equals_groupnorm_with_gradients():
    """The per-head norm as LayerNorm + affine is RWKV-7's GroupNorm, values and gradients (fp64)."""
    from baselines.rwkv7 import head_norm
    gen = torch.Generator().manual_seed(0)
    heads, size = 4, 8
    norm = torch.nn.GroupNorm(heads, heads * size, eps=1e-3).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(heads * size, generator=gen))
        norm.bias.copy_(torch.randn(heads * size, generator=gen))
    o = torch.randn(3, 5, heads, size, generator=gen, dtype=torch.float64) * 3 + 1
    grad = torch.randn(3, 5, heads * size, generator=gen, dtype=torch.float64)
    results = []
    for form in (lambda x: norm(x.reshape(-1, heads * size)).view(3, 5, -1), lambda x: head_norm(x, norm)):
        x = o.clone().requires_grad_()
        norm.zero_grad()
        out = form(x)
        out.backward(grad)
        results.append((out, x.grad, norm.weight.grad.clone(), norm.bias.grad.clone()))
    for expected, got in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    single = head_norm(o[:, 0], norm)  # the step path: (B, H, K) -> (B, H K)
    torch.testing.assert_close(single, results[0][0][:, 0], rtol=1e-12, atol=1e-12)


def test_state_sizes_in_closed_form():
    # 24 layers x (d_inner 1536 x d_state 128 + 3 conv steps x (1536 + 2 x 128))
    assert Mamba2().state_size("paper", VOCAB, MAX_LEN) == 24 * (1536 * 128 + 3 * 1792)
    # 12 layers x (12 heads x 64 x 64 + two token shifts of 768)
    assert RWKV7().state_size("paper", VOCAB, MAX_LEN) == 12 * (12 * 64 * 64 + 2 * 768)
    # 12 layers x 4 heads x (384 / 4) x (768 / 4)
    assert GLA().state_size("paper", VOCAB, MAX_LEN) == 12 * 4 * 96 * 192
    # 12 layers x (6 heads x 128 x 128 + 3 conv steps x 3 x 768)
    assert DeltaNet().state_size("paper", VOCAB, MAX_LEN) == 12 * (6 * 128 * 128 + 3 * 3 * 768)
    # 12 layers x (4 heads x 128 x 256 + 3 conv steps x (512 + 512 + 1024))
    assert GatedDeltaNet().state_size("paper", VOCAB, MAX_LEN) == 12 * (4 * 128 * 256 + 3 * 2048)


# ---- parameter counts, built on the meta device, against closed forms ----

def swiglu(d):
    return 3 * d * 256 * math.ceil(int(d * 8 / 3) / 256)


def mamba2_count(vocab, n_layers, d_model, d_state, d_conv, expand, head_dim, n_groups, **_):
    e = expand * d_model
    h, conv = e // head_dim, e + 2 * n_groups * d_state
    layer = d_model * (e + conv + h) + conv * (d_conv + 1) + 3 * h + e + e * d_model + d_model
    return vocab * d_model + n_layers * layer + d_model  # tied head, final norm


def gla_count(vocab, n_layers, d_model, n_heads, tie_embeddings, expand_k, expand_v, gate_rank, **_):
    d, k, v = d_model, int(d_model * expand_k), int(d_model * expand_v)
    mixer = 2 * d * k + 2 * d * v + d * gate_rank + gate_rank * k + k + v // n_heads + v * d
    return vocab * d * (1 if tie_embeddings else 2) + n_layers * (mixer + swiglu(d) + 2 * d) + d


def deltanet_count(vocab, n_layers, d_model, n_heads, head_dim, tie_embeddings, expand_v, gated,
                   conv_width, **_):
    d, k = d_model, n_heads * head_dim
    v = int(k * expand_v)
    mixer = 2 * d * k + d * v + d * n_heads + conv_width * (2 * k + v) + v // n_heads + v * d
    if gated:
        mixer += d * n_heads + d * v + 2 * n_heads
    return vocab * d * (1 if tie_embeddings else 2) + n_layers * (mixer + swiglu(d) + 2 * d) + d


def rwkv7_count(vocab, n_layers, d_model, head_size, tie_embeddings, ffn_mult, **_):
    from baselines.rwkv7 import lora_rank

    d, f = d_model, head_size / 64
    w, a, g, v = (lora_rank(d, 2.5, f), lora_rank(d, 2.5, f), lora_rank(d, 5), lora_rank(d, 1.7, f))
    time_mix = 6 * d + 3 * d + 4 * d * d + (2 * d * w + d) + (2 * d * a + d) + 2 * d * g + 2 * d
    value_residual = 2 * d * v + d
    channel_mix = d + 2 * d * 32 * math.ceil(ffn_mult * d / 32)
    layers = n_layers * (4 * d + time_mix + channel_mix) + (n_layers - 1) * value_residual
    return vocab * d * (1 if tie_embeddings else 2) + 2 * d + layers + 2 * d


CLOSED_FORMS = {"mamba2": mamba2_count, "gla": gla_count, "deltanet": deltanet_count,
                "gated_deltanet": deltanet_count, "rwkv7": rwkv7_count}


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_param_count_matches_closed_form(adapter, preset):
    config = adapter.config(preset, 20_000, 512)
    assert count_params(adapter, preset, 20_000, 512) == CLOSED_FORMS[adapter.name](20_000, **config)


def test_small_presets_have_the_budget_of_the_other_models():
    others = [load_adapter(name) for name in ("pythia", "hyena", "rwkv", "mamba", "global_mamba")]
    counts = {a.name: count_params(a, "small", 20_000, 512) for a in ADAPTERS + others}
    assert max(counts.values()) / min(counts.values()) < 1.15, counts


def test_paper_presets_are_about_130m():
    for adapter in ADAPTERS:  # at the benchmark's vocabulary, as the other paper-size models
        assert 100e6 < count_params(adapter, "paper", 20_000, 2048) < 130e6, adapter.name
    # Mamba2-130m at GPT-NeoX's vocabulary
    assert abs(count_params(Mamba2(), "paper", 50_277, 2048) / Mamba2.PAPER_PARAMS - 1) < 0.01


# ---- kernel dispatch reports ----

def test_cpu_kernel_paths_are_reported():
    paths = {a.name: kernel_paths(a.build("tiny", VOCAB, MAX_LEN)) for a in ADAPTERS}
    assert paths == {
        "mamba2": {"add_rms_norm": "reference.add_rms_norm_ref", "causal_conv1d": "reference.causal_conv1d_ref",
                   "ssd": "reference.ssd_chunked"},
        "gated_deltanet": {"causal_conv1d": "reference.causal_conv1d_ref",
                           "gated_delta_rule": "reference.delta_recurrent"},
        "rwkv7": {"rwkv7": "reference.rwkv7_recurrent"},
        "gla": {"gla": "reference.gla_chunked"},
        "deltanet": {"causal_conv1d": "reference.causal_conv1d_ref", "delta_rule": "reference.delta_recurrent"},
    }


# ---- GPU (pytest -m gpu): every op on its fast path, and the model agrees with its reference ----

@pytest.mark.gpu
@pytest.mark.triton_autotune
@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_gpu_fast_paths_agree_with_references(adapter):
    torch.manual_seed(0)
    model = adapter.build("small", 1000, 256).cuda()
    with torch.no_grad():  # wake the zero-initialised outputs (RWKV-7) so every gradient is compared
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    assert_fast_matches_reference(model, 1000)

def test_gated_deltanet_keeps_mamba2s_decay_init_and_linear_biases_start_at_zero():
    """The pre-norm LM zeroes the biases of its linear layers (fla's init), not every parameter
    whose name ends in "bias": Gated DeltaNet's dt_bias keeps its draw, dt in [1e-3, 0.1]."""
    torch.manual_seed(0)
    net = GatedDeltaNet().build("small", 64, 32)
    for name, p in net.named_parameters():
        if name.endswith("dt_bias"):
            dt = F.softplus(p.detach())
            assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001 and dt.std() > 0, name
        if name.endswith("A_log"):
            assert 0 < p.exp().min() and p.exp().max() <= 16, name
    gla = GLA().build("small", 64, 32)
    biases = [p for n, p in gla.named_parameters() if n.endswith("gk_up.bias")]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)


def test_slow_decay_ablation_draws_its_own_ranges_under_its_own_name():
    from baselines.deltanet import GatedDeltaNetSlowDecay
    torch.manual_seed(0)
    ablation = GatedDeltaNetSlowDecay()
    net = ablation.build("small", 64, 32)
    dts = [F.softplus(p.detach()) for n, p in net.named_parameters() if n.endswith("dt_bias")]
    rates = [p.detach().exp() for n, p in net.named_parameters() if n.endswith("A_log")]
    assert dts and all(d.min() >= 1e-4 * 0.999 and d.max() <= 1e-3 * 1.001 for d in dts)
    assert rates and all(r.max() <= 1.0 for r in rates)
    config = ablation.config("small", 64, 32)
    assert (config["decay_a_max"], config["decay_dt_min"], config["decay_dt_max"]) == (1.0, 1e-4, 1e-3)
    assert ablation.name != GatedDeltaNet.name  # its runs never share an id with the built-in's
    assert "decay_a_max" not in GatedDeltaNet().config("small", 64, 32)


def test_slow_decay_with_crossed_step_sizes_is_one_line():
    from baselines.deltanet import GatedDeltaNetSlowDecay

    class Crossed(GatedDeltaNetSlowDecay):
        decay = (1.0, 1e-2, 1e-3)

    with pytest.raises(UserError, match="decay_dt_min .* must be below decay_dt_max") as err:
        Crossed().config("small", 64, 32)
    assert "\n" not in str(err.value)
