"""Pythia, Hyena and RWKV adapters: training pass, causality, parameter counts, dispatch."""

import pytest
import torch

from baselines.hyena import Hyena
from baselines.pythia import Pythia, apply_rotary, rotary_tables
from baselines.rwkv import RWKV
from mqarbench.errors import UserError
from mqarbench.kernels import force_reference, kernel_paths
from mqarbench.models.describe import count_params
from gpu_parity import assert_fast_matches_reference

ADAPTERS = [Pythia(), Hyena(), RWKV()]
VOCAB, MAX_LEN = 50, 64


@pytest.fixture(scope="module", params=ADAPTERS, ids=lambda a: a.name)
def tiny(request):
    torch.manual_seed(0)
    return request.param, request.param.build("tiny", VOCAB, MAX_LEN)


def test_tiny_forward_backward_has_finite_grads(tiny):
    _, model = tiny
    input_ids = torch.randint(0, VOCAB, (3, MAX_LEN))
    logits = model(input_ids)
    assert logits.shape == (3, MAX_LEN, VOCAB)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB),
                                             input_ids[:, 1:].reshape(-1))
    model.zero_grad()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


def test_tiny_is_causal(tiny):
    _, model = tiny
    input_ids = torch.randint(0, VOCAB, (2, 40))
    changed = input_ids.clone()
    changed[:, 25] = (changed[:, 25] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(input_ids), model(changed)
    # FFT convolutions leave ~1e-7 noise; a causality leak would be of the order of the logits.
    torch.testing.assert_close(after[:, :25], before[:, :25], atol=1e-5, rtol=0)
    assert (after[:, 25:] - before[:, 25:]).abs().max() > 1e-3


def test_unknown_preset_is_a_user_error():
    for adapter in ADAPTERS:
        with pytest.raises(UserError, match="unknown preset 'huge'"):
            adapter.config("huge", VOCAB, MAX_LEN)


def test_rotary_scores_depend_only_on_the_offset():
    """Rotary's point: q_i . k_j after rotation is a function of i - j, on the rotated quarter;
    the unrotated channels are left as they are."""
    q, k = torch.randn(2, 16)
    cos, sin = rotary_tables(40, 4, 10_000, torch.device("cpu"))
    rq = apply_rotary(q.expand(40, 16), cos, sin)  # (L, Dh): q placed at every position
    rk = apply_rotary(k.expand(40, 16), cos, sin)
    scores = rq @ rk.T  # (L, L)
    torch.testing.assert_close(scores[10, 3], scores[30, 23], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores[10, 3], scores[10, 4], atol=1e-3)
    torch.testing.assert_close(rq[:, 4:], q[4:].expand(40, 12))


# ---- parameter counts, built on the meta device, against closed forms ----

def pythia_count(vocab, n_layers, d_model, tie_embeddings, **_):
    layer = 2 * 2 * d_model + (3 * d_model ** 2 + 3 * d_model) + (d_model ** 2 + d_model) \
        + (4 * d_model ** 2 + 4 * d_model) + (4 * d_model ** 2 + d_model)
    return vocab * d_model * (1 if tie_embeddings else 2) + n_layers * layer + 2 * d_model


def hyena_count(vocab, n_layers, d_model, filter_width, pos_dim, mlp_ratio, **_):
    d, w = d_model, filter_width
    filt = (pos_dim * w + w) + w + 2 * (w * w + w + w) + w * d  # 3 linears with sines, then out
    layer = 4 * d + (3 * d * d + 3 * d) + (3 * d * 3 + 3 * d) + filt + d + (d * d + d) \
        + (mlp_ratio * d * d + mlp_ratio * d) + (mlp_ratio * d * d + d)
    return vocab * d + n_layers * layer + 2 * d


def rwkv_count(vocab, n_layers, d_model, tie_embeddings, ffn_mult, mix_rank, decay_rank, **_):
    d, hidden = d_model, int(ffn_mult * d_model) // 32 * 32
    time_mix = 6 * d + 2 * 5 * mix_rank * d + d + 2 * decay_rank * d + d + 5 * d * d + 2 * d
    channel_mix = 2 * d + 2 * d * hidden + d * d
    return vocab * d * (1 if tie_embeddings else 2) + 2 * d + n_layers * (4 * d + time_mix + channel_mix) + 2 * d


CLOSED_FORMS = {"pythia": pythia_count, "hyena": hyena_count, "rwkv": rwkv_count}


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_param_count_matches_closed_form(adapter, preset):
    config = adapter.config(preset, 20_000, 512)
    assert count_params(adapter, preset, 20_000, 512) == CLOSED_FORMS[adapter.name](20_000, **config)


@pytest.mark.parametrize("adapter,vocab", [(Pythia(), 50_304), (Hyena(), 50_257)], ids=["pythia", "hyena"])
def test_paper_presets_reproduce_the_paper_sizes_at_the_original_vocabularies(adapter, vocab):
    """GPT-NeoX's padded vocabulary (Pythia) and GPT-2's (Hyena): within 1% of 133M / 153M."""
    assert abs(count_params(adapter, "paper", vocab, 2048) / adapter.PAPER_PARAMS - 1) < 0.01


def test_small_presets_are_of_similar_size():
    counts = [count_params(adapter, "small", 20_000, 512) for adapter in ADAPTERS]
    assert max(counts) / min(counts) < 1.15 and 2.5e6 < min(counts)


def test_state_sizes():
    assert Pythia().state_size("paper", VOCAB, MAX_LEN) == 0
    assert Hyena().state_size("paper", VOCAB, MAX_LEN) == 0
    # 12 layers x (16 heads x 64 x 64 WKV state + two token-shift vectors of 1024)
    assert RWKV().state_size("paper", VOCAB, MAX_LEN) == 12 * (16 * 64 * 64 + 2 * 1024)


# ---- kernel dispatch reports ----

def test_cpu_kernel_paths_are_reported():
    paths = {a.name: kernel_paths(a.build("tiny", VOCAB, MAX_LEN)) for a in ADAPTERS}
    assert paths == {"pythia": {"attention": "reference.causal_attention"},
                     "hyena": {"hyena_fft_conv": "torch.fft.long_conv_fft"},
                     "rwkv": {"rwkv6_wkv": "reference.wkv6_chunked"}}


def test_hyena_forced_reference_takes_the_direct_conv_and_agrees():
    torch.manual_seed(0)
    model = Hyena().build("tiny", VOCAB, MAX_LEN)
    input_ids = torch.randint(0, VOCAB, (2, MAX_LEN))
    with torch.no_grad():
        fast = model(input_ids)
        with force_reference():
            assert kernel_paths(model) == {"hyena_fft_conv": "reference.long_conv_direct"}
            reference = model(input_ids)
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-4)


def test_hyena_filters_do_not_depend_on_the_input_length():
    model = Hyena().build("tiny", VOCAB, MAX_LEN)
    implicit = model.blocks[0].mixer.filter
    torch.testing.assert_close(implicit(20, torch.device("cpu")), implicit(MAX_LEN, torch.device("cpu"))[:, :20])


# ---- GPU (pytest -m gpu): every op on its fast path, and the model agrees with its reference ----

@pytest.mark.gpu
@pytest.mark.parametrize("adapter", [pytest.param(a, marks=[pytest.mark.triton_autotune] if a.name == "rwkv" else [])
                                     for a in ADAPTERS], ids=lambda a: a.name)
def test_gpu_fast_paths_agree_with_references(adapter):
    torch.manual_seed(0)
    model = adapter.build("small", 1000, 256).cuda()
    assert_fast_matches_reference(model, 1000)