"""Global Selection examined: the long conv's direction, the authors' forward, the fused function,
the inits, the ablation surface and the training diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.global_mamba import (
    SILU_INV_ONE, GlobalMamba, GlobalMambaFirstLayer, GlobalMambaK64, GlobalMambaK256,
    GlobalMambaNoBias, GlobalMambaOpenGate, GlobalMambaOursInit, GlobalSelectionMixer)
from baselines.mamba import MambaMixer
from mqarbench.errors import UserError
from mqarbench.kernels import force_reference, kernel_choices, kernel_paths
from mqarbench.kernels import global_selection as gs
from mqarbench.kernels.causal_conv import causal_conv1d_ref
from mqarbench.kernels.long_conv import long_conv_like_conv1d
from mqarbench.kernels.selective_scan import selective_scan_chunked, selective_scan_ref

VOCAB, MAX_LEN = 37, 48


def mixer64(seed: int, **kwargs) -> GlobalSelectionMixer:
    torch.manual_seed(seed)
    return GlobalSelectionMixer(16, 4, 4, 2, 2, long_kernel=kwargs.pop("long_kernel", 8),
                                **kwargs).double()


# --- direction and alignment -----------------------------------------------------------------

@pytest.mark.parametrize("reference", [False, True], ids=["fft", "direct"])
def test_long_conv_is_causal_with_conv1d_tap_order_by_hand(reference):
    # Taps (1, 10, 100), bias 0.5: out_t = 1 x_{t-2} + 10 x_{t-1} + 100 x_t + 0.5, as nn.Conv1d
    # with two zeros of left padding gives; x = 1..5.
    x = torch.arange(1.0, 6.0, dtype=torch.float64).view(1, 1, 5)
    weight = torch.tensor([[[1.0, 10.0, 100.0]]], dtype=torch.float64)
    bias = torch.tensor([0.5], dtype=torch.float64)
    by_hand = torch.tensor([100.5, 210.5, 321.5, 432.5, 543.5], dtype=torch.float64)
    if reference:
        with force_reference():
            out = long_conv_like_conv1d(x, weight, bias)
    else:
        out = long_conv_like_conv1d(x, weight, bias)
    torch.testing.assert_close(out[0, 0], by_hand)
    module = torch.nn.Conv1d(1, 1, 3, padding=2).double()
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(bias)
        torch.testing.assert_close(module(x)[..., :5], out)


def test_mixer_gate_takes_the_x_branch_before_the_short_conv_in_conv1d_order():
    mixer = mixer64(0)
    hidden = torch.randn(2, 20, 16, dtype=torch.float64)
    x_branch = F.linear(hidden, mixer.in_proj.weight).transpose(1, 2)[:, :mixer.d_inner]
    conv = F.conv1d(x_branch, mixer.long_conv.weight, mixer.long_conv.bias,
                    padding=mixer.long_conv.weight.shape[-1] - 1, groups=mixer.d_inner)
    with torch.no_grad():
        torch.testing.assert_close(mixer.gate(x_branch), F.silu(conv[..., :20]))


# --- the authors' forward, re-implemented from their description, on the same weights --------

def authors_forward(mixer: GlobalSelectionMixer, hidden: torch.Tensor) -> torch.Tensor:
    """Their order: in_proj -> (x, z); long conv of x (nn.Conv1d, padding K-1, first L outputs);
    x -> short conv (padding 3, first L) -> SiLU; x_proj -> dt, B, C; dt = W_dt dt (no bias);
    dt *= SiLU(long conv); scan with dt_proj's bias and softplus, z gate; out_proj."""
    length = hidden.shape[1]
    x, z = mixer.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)
    k_long = mixer.long_conv.weight.shape[-1]
    long_out = F.conv1d(x, mixer.long_conv.weight, mixer.long_conv.bias, padding=k_long - 1,
                        groups=mixer.d_inner)[..., :length]
    short = mixer.conv1d
    u = F.silu(F.conv1d(x, short.weight, short.bias, padding=short.weight.shape[-1] - 1,
                        groups=mixer.d_inner)[..., :length])
    dt, b, c = mixer.x_proj(u.transpose(1, 2)).split(
        [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
    dt = (mixer.dt_proj.weight @ dt.transpose(1, 2)) * F.silu(long_out)
    y = selective_scan_ref(u, dt, -torch.exp(mixer.A_log), b.transpose(1, 2), c.transpose(1, 2),
                           mixer.D, z, delta_bias=mixer.dt_proj.bias, delta_softplus=True)
    return mixer.out_proj(y.transpose(1, 2))


@pytest.mark.parametrize("init,bias", [("authors", True), ("ours", False), ("open", True)])
def test_our_mixer_equals_the_authors_forward_on_the_same_weights(init, bias):
    mixer = mixer64(1, init=init, bias=bias, long_kernel=16)
    with torch.no_grad():  # a trained-looking gate, not the init's special values
        mixer.long_conv.weight.normal_(0, 0.3)
    hidden = torch.randn(2, 24, 16, dtype=torch.float64, requires_grad=True)
    ours, theirs = mixer(hidden), authors_forward(mixer, hidden)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad(ours.square().sum(), [hidden] + list(mixer.parameters()))
    g_theirs = torch.autograd.grad(theirs.square().sum(), [hidden] + list(mixer.parameters()))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)


# --- the fused function: its glue checked on CPU with reference kernels in place -------------

def _ref_scan_fwd(u, delta, A, B, C, D, z, delta_bias):
    out = selective_scan_chunked(u, delta, A, B[:, 0], C[:, 0], D, None, delta_bias, True)
    return [out, torch.empty(0), out * F.silu(z)]


def _ref_scan_bwd(u, delta, A, B, C, D, z, delta_bias, dout, checkpoints, out, dz=None):
    """As selective_scan_cuda.bwd: z's gradient written into dz when given (dxz's half)."""
    leaves = [t.detach().requires_grad_() for t in (u, delta, A, B, C, D, z, delta_bias)]
    with torch.enable_grad():
        out_z = selective_scan_chunked(leaves[0], leaves[1], leaves[2], leaves[3][:, 0],
                                       leaves[4][:, 0], leaves[5], leaves[6], leaves[7], True)
    grads = torch.autograd.grad(out_z, leaves, dout)
    dz_out = grads[6] if dz is None else dz.copy_(grads[6])
    return [grads[0], grads[1], grads[2], grads[3], grads[4], grads[5], grads[7], dz_out,
            out_z.detach()]


@pytest.fixture
def reference_kernels(monkeypatch):
    monkeypatch.setitem(gs.KERNELS, "conv", causal_conv1d_ref)
    monkeypatch.setitem(gs.KERNELS, "scan_fwd", _ref_scan_fwd)
    monkeypatch.setitem(gs.KERNELS, "scan_bwd", _ref_scan_bwd)


def fused_call(mixer, hidden):
    return gs.global_selection_inner_fn(
        mixer._in_proj(hidden), mixer.conv1d.weight, mixer.conv1d.bias, mixer.x_proj.weight,
        mixer.dt_proj.weight, mixer.out_proj.weight, -torch.exp(mixer.A_log.float()),
        mixer.D.float(), mixer.dt_proj.bias.float(), mixer.long_conv.weight, mixer.long_conv.bias)


@pytest.mark.parametrize("bias", [True, False])
def test_fused_function_equals_the_unfused_mixer_forward_and_grads(reference_kernels, bias):
    mixer = mixer64(2, bias=bias, long_kernel=12)
    hidden = torch.randn(3, 21, 16, dtype=torch.float64)
    params = [hidden.requires_grad_()] + list(mixer.parameters())
    unfused = mixer(hidden)
    fused = fused_call(mixer, hidden)
    torch.testing.assert_close(fused, unfused)
    weights = torch.randn_like(unfused)
    for a, b, name in zip(torch.autograd.grad((fused * weights).sum(), params),
                          torch.autograd.grad((unfused * weights).sum(), params),
                          ["hidden"] + [n for n, _ in mixer.named_parameters()]):
        torch.testing.assert_close(a, b, msg=name)


def test_fused_path_is_taken_only_on_cuda_with_its_kernels():
    choice = dict(kernel_choices(GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=8)))
    assert "global_selection_inner" not in choice and not choice["selective_scan"].fast
    fn, why = gs.global_selection_inner_impl(torch.device("cpu"))
    assert fn is None and why.path == "reference.unfused"


def test_fused_mixer_from_paper_width_unless_forced(monkeypatch):
    """On CUDA with its kernels and MQARBENCH_DETERMINISTIC=0, the fused function runs layers of
    >= 1024 channels (`paper`), the unfused path the narrower ones (`small`); use_inner_fn forces
    either. Deterministic training (the default) never takes it: it holds mamba_ssm's scan."""
    from mqarbench.models.describe import available_kernels
    from mqarbench.models.registry import load_adapter

    monkeypatch.delenv("MQARBENCH_DETERMINISTIC", raising=False)
    assert "global_selection_inner" not in GlobalSelectionMixer(512, 4, 4, 2, 1, long_kernel=8).kernel_choices(
        torch.device("cuda"))
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "0")
    monkeypatch.setattr(gs, "selective_scan_cuda", object())
    monkeypatch.setattr(gs, "causal_conv1d_fn", object())
    narrow, wide = (GlobalSelectionMixer(d, 4, 4, 2, 1, long_kernel=8) for d in (256, 512))
    assert (narrow.d_inner, wide.d_inner) == (512, 1024)
    assert not narrow.takes_inner_fn() and wide.takes_inner_fn()
    cuda = torch.device("cuda")
    assert "global_selection_inner" not in narrow.kernel_choices(cuda)
    assert wide.kernel_choices(cuda)["global_selection_inner"].fast
    narrow.use_inner_fn, wide.use_inner_fn = True, False
    assert narrow.takes_inner_fn() and not wide.takes_inner_fn()
    adapter = load_adapter("global_mamba")
    assert "global_selection_inner" in available_kernels(adapter, "cuda", "paper")
    assert "global_selection_inner" not in available_kernels(adapter, "cuda", "small")


def test_global_mixer_variable_forces_either_path_and_a_bad_value_is_one_line(monkeypatch):
    """MQARBENCH_GLOBAL_MIXER=fused / unfused overrides the width rule (use_inner_fn, set by
    tests and benchmarks, overrides both); the kernel choices follow, so runs record it. Asking
    for the fused mixer by name leaves deterministic training (the default) off, as it holds
    mamba_ssm's scan."""
    from mqarbench.errors import UserError
    from mqarbench.kernels.determinism import deterministic_chosen

    monkeypatch.delenv("MQARBENCH_DETERMINISTIC", raising=False)
    monkeypatch.setattr(gs, "selective_scan_cuda", object())
    monkeypatch.setattr(gs, "causal_conv1d_fn", object())
    narrow, wide = (GlobalSelectionMixer(d, 4, 4, 2, 1, long_kernel=8) for d in (256, 512))
    cuda = torch.device("cuda")
    monkeypatch.setenv("MQARBENCH_GLOBAL_MIXER", "fused")
    assert narrow.takes_inner_fn() and "global_selection_inner" in narrow.kernel_choices(cuda)
    assert not deterministic_chosen()
    monkeypatch.setenv("MQARBENCH_GLOBAL_MIXER", "unfused")
    assert not wide.takes_inner_fn() and "selective_scan" in wide.kernel_choices(cuda)
    assert deterministic_chosen()
    wide.use_inner_fn = True
    assert wide.takes_inner_fn()
    monkeypatch.setenv("MQARBENCH_GLOBAL_MIXER", "auto")
    assert not narrow.takes_inner_fn()
    monkeypatch.setenv("MQARBENCH_GLOBAL_MIXER", "inner")
    with pytest.raises(UserError, match=r"^MQARBENCH_GLOBAL_MIXER='inner': use one of auto, fused, unfused"):
        narrow.takes_inner_fn()


def test_gate_kernels_only_with_the_triton_long_conv_on_cuda(monkeypatch):
    """MQARBENCH_LONG_CONV=triton on a CPU falls back to the FFT, and so does the gate."""
    for value in ("auto", "fft", "toeplitz", "triton"):
        monkeypatch.setenv("MQARBENCH_LONG_CONV", value)
        assert not gs._fused_gate(torch.device("cpu"), 4096), value
    monkeypatch.setattr(gs, "global_long_conv_impl", lambda device, width: (gs.long_conv_triton, None))
    assert gs._fused_gate(torch.device("cpu"), 16)  # decided by the dispatched long conv alone


def test_models_show_reports_the_long_conv_of_the_presets_width(monkeypatch):
    """`mqarbench models show` builds the preset's model on the meta device: at `paper` (1536
    channels) Global Selection's long conv would take the Triton kernels on CUDA, at `small` the FFT."""
    from mqarbench.kernels import long_conv as lc
    from mqarbench.models.describe import available_kernels
    from mqarbench.models.registry import load_adapter

    monkeypatch.delenv("MQARBENCH_LONG_CONV", raising=False)
    monkeypatch.setattr(lc, "triton_available", lambda: (True, ""))
    adapter = load_adapter("global_mamba")
    assert available_kernels(adapter, "cuda", "paper")["long_conv"] == "triton.long_conv_triton"
    assert available_kernels(adapter, "cuda", "small")["long_conv"] == "torch.fft.long_conv_fft"
    assert available_kernels(adapter, "cpu", "paper")["long_conv"] == "torch.fft.long_conv_fft"


# --- inits, bias, ablation surface ------------------------------------------------------------

def test_authors_init_is_nn_conv1d_default_with_bias():
    mixer = GlobalSelectionMixer(64, 4, 4, 2, 4, long_kernel=128)
    bound = 1 / math.sqrt(128)  # kaiming_uniform(a=sqrt(5)) of fan_in K: U(-1/sqrt(K), 1/sqrt(K))
    assert mixer.long_conv.weight.shape == (128, 1, 128)
    assert mixer.long_conv.weight.abs().max() <= bound
    assert mixer.long_conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert mixer.long_conv.bias is not None and mixer.long_conv.bias.abs().max() <= bound


def test_ours_init_has_unit_gain_newest_tap_heaviest_and_no_bias():
    torch.manual_seed(0)
    mixer = GlobalSelectionMixer(64, 4, 4, 2, 4, long_kernel=32, init="ours", bias=False)
    w = mixer.long_conv.weight.detach()[:, 0]  # (E, K), tap K-1 multiplies x_t
    assert mixer.long_conv.bias is None
    assert w.square().sum(-1).mean().item() == pytest.approx(1.0, rel=0.1)
    assert w[:, -1].abs().mean() > 5 * w[:, 0].abs().mean()


def test_open_gate_starts_exactly_as_mamba():
    assert F.silu(torch.tensor(SILU_INV_ONE, dtype=torch.float64)).item() == pytest.approx(
        1.0, abs=1e-7)
    torch.manual_seed(3)
    gated = GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=8, init="open").double()
    plain = MambaMixer(16, 4, 4, 2, 1).double()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items()
                           if not k.startswith("long_conv.")})
    hidden = torch.randn(2, 12, 16, dtype=torch.float64)
    torch.testing.assert_close(gated(hidden), plain(hidden), rtol=1e-6, atol=1e-7)


def test_bad_init_and_open_without_bias_are_user_errors():
    with pytest.raises(UserError, match="long_conv_init"):
        GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=8, init="zeros")
    with pytest.raises(UserError, match="long_conv_bias"):
        GlobalSelectionMixer(16, 4, 4, 2, 1, long_kernel=8, init="open", bias=False)

    class Bad(GlobalMamba):
        long_conv_init = "zeros"

    with pytest.raises(UserError, match="long_conv_init"):
        Bad().config("tiny", VOCAB, MAX_LEN)


def test_default_is_the_authors_form_and_the_ablations_differ_in_their_config():
    base = GlobalMamba().config("small", VOCAB, MAX_LEN)
    assert (base["long_conv_init"], base["long_conv_bias"], base["long_kernel"]) == (
        "authors", True, 128)
    assert base["global_selection_layers"] == list(range(base["n_layers"]))
    expected = {GlobalMambaOursInit: {"long_conv_init": "ours", "long_conv_bias": False},
                GlobalMambaNoBias: {"long_conv_bias": False},
                GlobalMambaOpenGate: {"long_conv_init": "open"},
                GlobalMambaK64: {"long_kernel": 64}, GlobalMambaK256: {"long_kernel": 256},
                GlobalMambaFirstLayer: {"global_selection_layers": [0]}}
    names = {GlobalMamba.name}
    for cls, change in expected.items():
        cfg = cls().config("small", VOCAB, MAX_LEN)
        diff = {k: v for k, v in cfg.items() if base.get(k) != v and k != "model"}
        assert diff == change, cls.__name__
        assert cls.name not in names
        names.add(cls.name)
        model = cls().build("tiny", VOCAB, MAX_LEN)
        assert model(torch.randint(0, VOCAB, (1, 10))).shape == (1, 10, VOCAB)


# --- training diagnostics ---------------------------------------------------------------------

def test_diagnostics_report_gate_and_delta_per_gated_layer_and_are_off_by_default():
    torch.manual_seed(4)
    model = GlobalMambaFirstLayer().build("tiny", VOCAB, MAX_LEN)
    ids = torch.randint(0, VOCAB, (2, 16))
    model(ids)
    assert model.diagnostics() == {}
    assert not model.layers[0].mixer._forward_pre_hooks
    model.track_diagnostics()
    captured = []
    handle = model.layers[0].mixer.register_forward_pre_hook(
        lambda m, args: captured.append(args[0].detach()))
    model(ids)
    handle.remove()
    stats = model.diagnostics()
    keys = {f"layer0.{q}.{s}" for q in ("gate", "dt_input", "delta")
            for s in ("mean", "std", "near0")}
    assert set(stats) == keys  # layer 1 is plain Mamba: not reported
    mixer = model.layers[0].mixer
    with torch.no_grad():
        x_branch = mixer._in_proj(captured[0]).chunk(2, dim=1)[0]
        gate = mixer.gate(x_branch)
    assert stats["layer0.gate.mean"] == pytest.approx(gate.mean().item(), rel=1e-5)
    assert stats["layer0.gate.std"] == pytest.approx(gate.std(unbiased=False).item(), rel=1e-4)
    assert stats["layer0.gate.near0"] == pytest.approx((gate.abs() < 0.05).float().mean().item())
    assert stats["layer0.delta.mean"] > 0
    assert model.diagnostics() == {}  # read once, then it starts anew
    model.track_diagnostics(False)
    assert not mixer._forward_pre_hooks


def test_open_gate_diagnostics_show_gate_one():
    model = GlobalMambaOpenGate().build("tiny", VOCAB, MAX_LEN)
    model.track_diagnostics()
    model(torch.randint(0, VOCAB, (2, 16)))
    stats = model.diagnostics()
    for layer in (0, 1):
        assert stats[f"layer{layer}.gate.mean"] == pytest.approx(1.0, abs=1e-6)
        assert stats[f"layer{layer}.gate.std"] == pytest.approx(0.0, abs=1e-5)


# --- the fused function on the GPU against the unfused reference path -------------------------

def _out_and_grads(mixer, hidden, autocast):
    hidden = hidden.detach().clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = mixer(hidden)
    out.float().square().mean().backward()
    grads = {"hidden": hidden.grad}
    grads.update({name: p.grad for name, p in mixer.named_parameters()})
    mixer.zero_grad(set_to_none=True)
    return out.float().detach(), grads


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("autocast,tol", [(False, 2e-3), (True, 6e-2)])
@pytest.mark.parametrize("long_conv", ["fft", "triton"])
def test_fused_global_selection_matches_reference_on_gpu(bias, autocast, tol, long_conv, monkeypatch):
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "0")  # the fused mixer holds mamba_ssm's scan
    monkeypatch.setenv("MQARBENCH_LONG_CONV", long_conv)
    torch.manual_seed(6)
    mixer = GlobalSelectionMixer(128, 16, 4, 2, 8, long_kernel=64, bias=bias).cuda()
    mixer.use_inner_fn = True  # 256 channels would take the unfused path
    assert kernel_choices(mixer)["global_selection_inner"].fast, kernel_choices(mixer)
    assert kernel_choices(mixer)["long_conv"].path.startswith(long_conv if long_conv == "triton" else "torch.fft")
    hidden = torch.randn(2, 300, 128, device="cuda")
    fast, fast_grads = _out_and_grads(mixer, hidden, autocast)
    with force_reference():
        ref, ref_grads = _out_and_grads(mixer, hidden, autocast)
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol * ref.abs().max().item())
    for name, g_ref in ref_grads.items():
        g_fast = fast_grads[name]
        assert g_fast.shape == g_ref.shape and g_fast.dtype == g_ref.dtype, name
        torch.testing.assert_close(g_fast.float(), g_ref.float(), rtol=tol,
                                   atol=tol * g_ref.abs().max().item(), msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_path_replays_as_a_cuda_graph_on_gpu(monkeypatch):
    """The pack captures each run's step as a CUDA graph; at `paper` width that step takes the
    Triton long conv and gate kernels: a captured forward + backward, replayed on new inputs,
    must give the eager step's output and gradients."""
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "0")  # the fused mixer holds mamba_ssm's scan
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "triton")
    torch.manual_seed(8)
    mixer = GlobalSelectionMixer(64, 16, 4, 2, 4, long_kernel=32).cuda()
    mixer.use_inner_fn = True  # the fused step, as at `paper` width
    assert kernel_choices(mixer)["long_conv"].path == "triton.long_conv_triton"
    assert kernel_choices(mixer)["global_selection_inner"].fast
    params = list(mixer.parameters())
    static_in = torch.randn(2, 96, 64, device="cuda")  # (B, L, d_model)

    def step() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = mixer(static_in)
        out.float().square().mean().backward()
        return out

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm up outside the capture, as the pack does
        for _ in range(2):
            mixer.zero_grad(set_to_none=False)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    mixer.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        captured_out = step()
    new_in = torch.randn_like(static_in)
    static_in.copy_(new_in)
    for p in params:
        p.grad.zero_()
    graph.replay()
    torch.cuda.synchronize()
    replayed = (captured_out.float().clone(), [p.grad.clone() for p in params])
    mixer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager_out = mixer(new_in)
    eager_out.float().square().mean().backward()
    torch.testing.assert_close(replayed[0], eager_out.float(), rtol=1e-2, atol=1e-2)
    for (name, p), got in zip(mixer.named_parameters(), replayed[1]):
        torch.testing.assert_close(got, p.grad, rtol=2e-2, atol=2e-2 * p.grad.abs().max().item(), msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_global_mamba_trains_a_step_on_gpu():
    torch.manual_seed(7)
    model = GlobalMamba().build("tiny", VOCAB, MAX_LEN).cuda()
    for mixer in model.modules():
        if isinstance(mixer, GlobalSelectionMixer):
            mixer.use_inner_fn = True  # tiny's width takes the unfused path by default
    ids = torch.randint(0, VOCAB, (4, 40), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(ids).float().flatten(0, 1), ids.flatten())
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_diagnostics_on_gpu_under_autocast_match_the_cpu_model():
    """The runner records them while validating on the GPU (bf16 autocast, fused path)."""
    torch.manual_seed(8)
    model = GlobalMamba().build("tiny", VOCAB, MAX_LEN).eval()
    ids = torch.randint(0, VOCAB, (4, 40))
    model.track_diagnostics()
    with torch.no_grad():
        model(ids)
    on_cpu = model.diagnostics()
    model.cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(ids.cuda())
    on_gpu = model.diagnostics()
    model.track_diagnostics(False)
    assert set(on_gpu) == set(on_cpu) and on_gpu
    for key, value in on_cpu.items():  # bf16 activations and fast kernels: the same to ~10%
        assert on_gpu[key] == pytest.approx(value, rel=0.1, abs=0.01), key


def test_toeplitz_long_conv_gives_the_fft_models_outputs_and_gradients(monkeypatch):
    torch.manual_seed(9)
    model = GlobalMamba().build("tiny", VOCAB, MAX_LEN).double()
    ids = torch.randint(0, VOCAB, (2, 40))
    fft = model(ids)
    fft_grads = torch.autograd.grad(fft.square().mean(), list(model.parameters()))
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "toeplitz")
    assert kernel_paths(model)["long_conv"] == "torch.bmm.long_conv_toeplitz"
    toeplitz = model(ids)
    grads = torch.autograd.grad(toeplitz.square().mean(), list(model.parameters()))
    torch.testing.assert_close(toeplitz, fft)
    for got, want in zip(grads, fft_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_toeplitz_long_conv_under_autocast_matches_direct_on_gpu():
    from mqarbench.kernels.long_conv import long_conv_direct, long_conv_toeplitz

    x = torch.randn(4, 96, 300, device="cuda")
    kernel = torch.randn(96, 128, device="cuda") / 128 ** 0.5
    expected = long_conv_direct(x.double(), kernel.double()).float()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = long_conv_toeplitz(x, kernel)
    assert ((out.float() - expected).abs().max() / expected.abs().max()).item() < 2e-2  # bf16 inputs
