"""Mamba kernels: the exact references agree with each other; fast paths agree with them (gpu)."""

from __future__ import annotations

import pytest
import torch

from mqarbench.errors import UserError
from mqarbench.kernels import force_reference
from mqarbench.kernels.causal_conv import causal_conv1d_fn, causal_conv1d_ref, conv_impl
from mqarbench.kernels.long_conv import long_conv_direct, long_conv_fft, long_conv_impl
from mqarbench.kernels.selective_scan import (
    scan_impl, selective_scan_chunked, selective_scan_fn, selective_scan_ref)


def scan_inputs(batch=2, dim=6, n_state=4, length=21, dtype=torch.float64, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(device, dtype)
    return {
        "u": rand(batch, dim, length), "delta": rand(batch, dim, length, scale=0.5),
        "A": -torch.rand(dim, n_state, generator=gen, dtype=torch.float64).mul(8).add(0.1).to(
            device, torch.float32 if dtype != torch.float64 else dtype),
        "B": rand(batch, n_state, length), "C": rand(batch, n_state, length),
        "D": rand(dim).float() if dtype != torch.float64 else rand(dim),
        "z": rand(batch, dim, length),
        "delta_bias": rand(dim, scale=0.5).float() if dtype != torch.float64 else rand(dim),
    }


def grads(fn, inputs, seed=1):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out = fn(**leaves, delta_softplus=True)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    (out * weight).sum().backward()
    return out.detach(), {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("chunk", [1, 5, 8, 64])
def test_chunked_scan_equals_sequential_scan_with_gradients(chunk):
    inputs = scan_inputs()
    out_ref, g_ref = grads(selective_scan_ref, inputs)
    out, g = grads(lambda **kw: selective_scan_chunked(**kw, chunk=chunk), inputs)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-9, atol=1e-9, msg=name)


def test_chunked_scan_fp32_strong_decay_stays_finite_and_exact():
    inputs = scan_inputs(dtype=torch.float32, length=70)
    inputs["A"] = inputs["A"] * 50  # decays of exp(-400 * delta): the naive cumsum form overflows
    out = selective_scan_chunked(**inputs, delta_softplus=True, chunk=32)
    ref = selective_scan_ref(**inputs, delta_softplus=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_scan_ref_matches_the_recurrence_by_hand():
    u = torch.tensor([[[1.0, 2.0, 0.0]]], dtype=torch.float64)  # (1, 1, 3)
    delta = torch.full_like(u, 0.5)
    A = torch.tensor([[-2.0]], dtype=torch.float64)
    B = torch.tensor([[[1.0, 1.0, 1.0]]], dtype=torch.float64)
    C = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    decay = torch.exp(torch.tensor(-1.0, dtype=torch.float64))
    h1 = 0.5 * 1.0
    h2 = decay * h1 + 0.5 * 2.0
    h3 = decay * h2
    expected = torch.tensor([h1 * 1.0, h2 * 2.0, h3 * 3.0], dtype=torch.float64).reshape(1, 1, 3)
    torch.testing.assert_close(selective_scan_ref(u, delta, A, B, C), expected)


def test_causal_conv_ref_is_causal_depthwise_and_activated():
    x = torch.randn(2, 3, 10, dtype=torch.float64)
    weight, bias = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    out = causal_conv1d_ref(x, weight, bias, activation="silu")
    padded = torch.nn.functional.pad(x, (3, 0))
    by_hand = torch.stack([(padded[..., t:t + 4] * weight).sum(-1) + bias for t in range(10)], -1)
    torch.testing.assert_close(out, torch.nn.functional.silu(by_hand))


@pytest.mark.parametrize("length,taps", [(50, 7), (20, 128), (64, 64), (1, 3), (70, 28), (61, 17)])
def test_long_conv_fft_equals_direct_and_the_sum_by_hand(length, taps):  # FFT lengths 60, 150, 128, 3, 100, 80
    x = torch.randn(2, 5, length, dtype=torch.float64)
    kernel = torch.randn(5, taps, dtype=torch.float64)
    direct = long_conv_direct(x, kernel)
    by_hand = torch.zeros_like(x)
    for t in range(length):
        for j in range(min(taps, t + 1)):
            by_hand[..., t] += kernel[:, j] * x[..., t - j]
    torch.testing.assert_close(direct, by_hand)
    torch.testing.assert_close(long_conv_fft(x.float(), kernel.float()).double(), direct,
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(long_conv_fft(x, kernel), direct)  # fp64 stays fp64


@pytest.mark.parametrize("length,taps", [(50, 7), (20, 128), (64, 64), (1, 3), (300, 128), (33, 1)])
def test_long_conv_toeplitz_equals_direct_with_gradients(length, taps):
    from mqarbench.kernels.long_conv import long_conv_toeplitz

    x = torch.randn(3, 5, length, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(5, taps, dtype=torch.float64, requires_grad=True)
    direct = long_conv_direct(x, kernel)
    out = long_conv_toeplitz(x, kernel)
    torch.testing.assert_close(out, direct)
    weights = torch.randn_like(direct)
    grads = torch.autograd.grad((out * weights).sum(), (x, kernel))
    expected = torch.autograd.grad((direct * weights).sum(), (x, kernel))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_toeplitz_is_global_selections_opt_in_and_never_hyenas(monkeypatch):
    from mqarbench.kernels.long_conv import global_long_conv_impl, long_conv_like_conv1d, long_conv_toeplitz

    cpu = torch.device("cpu")
    assert global_long_conv_impl(cpu)[1].path == "torch.fft.long_conv_fft"
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "toeplitz")
    assert global_long_conv_impl(cpu) == (long_conv_toeplitz, global_long_conv_impl(cpu)[1])
    assert global_long_conv_impl(cpu)[1].path == "torch.bmm.long_conv_toeplitz"
    assert long_conv_impl(cpu)[1].path == "torch.fft.long_conv_fft"  # Hyena's kernels span L
    conv = torch.nn.Conv1d(6, 6, 9, groups=6, padding=8).double()
    x = torch.randn(2, 6, 40, dtype=torch.float64)
    torch.testing.assert_close(long_conv_like_conv1d(x, conv.weight, conv.bias), conv(x)[..., :40])
    with force_reference():
        assert global_long_conv_impl(cpu)[1].path == "reference.long_conv_direct"


def test_triton_long_conv_is_opt_in_on_cuda_and_says_why_elsewhere(monkeypatch):
    from mqarbench.errors import UserError
    from mqarbench.kernels.long_conv import global_long_conv_impl, long_conv_fft

    cpu = torch.device("cpu")
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "triton")
    conv, choice = global_long_conv_impl(cpu)  # Triton's kernels need a GPU: the FFT, and why
    assert conv is long_conv_fft and choice.path == "torch.fft.long_conv_fft"
    assert "triton" in choice.missing and ("CUDA" in choice.missing or "not importable" in choice.missing)
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "fast")
    with pytest.raises(UserError, match="MQARBENCH_LONG_CONV='fast': use one of auto, fft, toeplitz, triton"):
        global_long_conv_impl(cpu)
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "fft")
    assert global_long_conv_impl(cpu)[0] is long_conv_fft


@pytest.mark.parametrize("env", [None, "auto"])
def test_auto_long_conv_takes_triton_on_wide_cuda_layers_only(monkeypatch, env):
    """Unset (auto): the Triton kernels on CUDA from TRITON_FROM_WIDTH channels (paper's 1536),
    the FFT below (small's 256), on a CPU, and where Triton is missing; only the device's type is
    read, so a CUDA device object needs no GPU here."""
    from mqarbench.kernels import long_conv as lc

    if env is None:
        monkeypatch.delenv("MQARBENCH_LONG_CONV", raising=False)
    else:
        monkeypatch.setenv("MQARBENCH_LONG_CONV", env)
    monkeypatch.setattr(lc, "triton_available", lambda: (True, ""))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert lc.TRITON_FROM_WIDTH == 1024
    conv, choice = lc.global_long_conv_impl(cuda, 1536)
    assert conv is lc.long_conv_triton and choice.path == "triton.long_conv_triton" and choice.fast
    assert lc.global_long_conv_impl(cuda, 1024)[0] is lc.long_conv_triton
    for device, width in [(cuda, 1023), (cuda, 256), (cuda, None), (cpu, 1536)]:
        conv, choice = lc.global_long_conv_impl(device, width)
        assert conv is lc.long_conv_fft and choice.missing == "", (device, width)  # the FFT is auto's own choice
    monkeypatch.setattr(lc, "triton_available", lambda: (False, "triton not importable"))
    assert lc.global_long_conv_impl(cuda, 1536)[0] is lc.long_conv_fft
    with force_reference():
        assert lc.global_long_conv_impl(cuda, 1536)[1].path == "reference.long_conv_direct"


def test_fft_length_is_the_smallest_5_smooth_length_at_least_n():
    from mqarbench.kernels.long_conv import fft_length

    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    assert [fft_length(n) for n in (1, 7, 11, 97, 639, 1023, 1025)] == [1, 8, 12, 100, 640, 1024, 1080]
    for n in range(1, 2000):
        m = fft_length(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))


def test_cpu_takes_references_and_force_reference_switches_long_conv():
    cpu = torch.device("cpu")
    assert not scan_impl(cpu)[1].fast and not conv_impl(cpu)[1].fast
    assert long_conv_impl(cpu)[0] is long_conv_fft
    with force_reference():
        assert long_conv_impl(cpu)[0] is long_conv_direct


def test_triton_scan_choice_and_mamba_inner_fn_left_out(monkeypatch):
    """Under deterministic training (the default) or MQARBENCH_SELECTIVE_SCAN=triton our scan runs
    on CUDA in the unfused Mamba block (the fused mamba_inner_fn and Global Selection's fused mixer
    hold mamba_ssm's scan); with MQARBENCH_DETERMINISTIC=0 and the variable unset, mamba_ssm's
    kernels (or the reference, saying why, where they are missing); a bad value is one line on any
    device."""
    from baselines.mamba import MambaMixer
    from mqarbench.kernels import selective_scan as ss
    from mqarbench.kernels.global_selection import global_selection_inner_impl
    from mqarbench.kernels.selective_scan_triton import selective_scan_triton
    from mqarbench.kernels.triton_support import triton_available

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    mixer = MambaMixer(d_model=8, d_state=4, d_conv=4, expand=2, dt_rank=2)
    monkeypatch.delenv("MQARBENCH_SELECTIVE_SCAN", raising=False)
    monkeypatch.delenv("MQARBENCH_DETERMINISTIC", raising=False)  # the default: deterministic, so ours
    if triton_available()[0]:
        assert ss.scan_impl(cuda)[1].path == "triton.selective_scan_triton"
    monkeypatch.setenv("MQARBENCH_DETERMINISTIC", "0")  # the libraries' kernels
    default = ss.scan_impl(cuda)[1]
    assert default.path == ("mamba_ssm.selective_scan_fn" if selective_scan_fn is not None
                            else "reference.selective_scan_chunked")
    assert "selective_scan" not in mixer.kernel_choices(cuda) or selective_scan_fn is None
    monkeypatch.setenv("MQARBENCH_SELECTIVE_SCAN", "triton")
    if triton_available()[0]:
        assert ss.scan_impl(cuda) == (selective_scan_triton, ss.KernelChoice("triton.selective_scan_triton", True))
    assert ss.inner_impl(cuda)[0] is None
    assert global_selection_inner_impl(cuda)[0] is None  # it calls mamba_ssm's scan kernels too
    assert set(mixer.kernel_choices(cuda)) == {"causal_conv1d", "selective_scan"}
    assert ss.scan_impl(cpu)[1] == ss.KernelChoice("reference.selective_scan_chunked", False)
    with force_reference():
        assert ss.scan_impl(cuda)[1].path == "reference.selective_scan_chunked"
    monkeypatch.setenv("MQARBENCH_SELECTIVE_SCAN", "cuda")
    for device in (cpu, cuda):
        with pytest.raises(UserError, match="MQARBENCH_SELECTIVE_SCAN='cuda': use one of auto, mamba_ssm, triton"):
            ss.scan_impl(device)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 5e-2)])
def test_selective_scan_fn_matches_reference(dtype, tol):
    assert selective_scan_fn is not None, "mamba_ssm not importable"
    inputs = scan_inputs(batch=2, dim=64, n_state=16, length=300, dtype=dtype, device="cuda")
    out_ref, g_ref = grads(selective_scan_chunked, {k: v.float() for k, v in inputs.items()})
    out, g = grads(selective_scan_fn, inputs)
    torch.testing.assert_close(out.float(), out_ref, rtol=tol, atol=tol)
    for name in g_ref:
        scale = g_ref[name].abs().max().item()
        torch.testing.assert_close(g[name].float(), g_ref[name], rtol=tol, atol=tol * scale,
                                   msg=name)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_causal_conv1d_fn_matches_reference(dtype, tol):
    assert causal_conv1d_fn is not None, "causal_conv1d not importable"
    x = torch.randn(2, 64, 200, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(64, 4, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(64, device="cuda", dtype=dtype, requires_grad=True)
    fast = causal_conv1d_fn(x, w, b, activation="silu")
    grads_fast = torch.autograd.grad(fast.float().square().sum(), (x, w, b))
    ref = causal_conv1d_ref(x.float(), w.float(), b.float(), activation="silu")
    grads_ref = torch.autograd.grad(ref.square().sum(), (x, w, b))
    torch.testing.assert_close(fast.float(), ref, rtol=tol, atol=tol)
    for gf, gr in zip(grads_fast, grads_ref):
        torch.testing.assert_close(gf.float(), gr.float(), rtol=tol,
                                   atol=tol * gr.abs().max().item())


@pytest.mark.gpu
@gpu
def test_long_conv_fft_matches_direct_on_cuda_with_gradients():
    x = torch.randn(4, 128, 512, device="cuda", requires_grad=True)
    k = (torch.randn(128, 128, device="cuda") / 12).requires_grad_()
    fast, ref = long_conv_fft(x, k), long_conv_direct(x, k)
    torch.testing.assert_close(fast, ref, rtol=1e-3, atol=1e-3)
    g_fast = torch.autograd.grad(fast.square().sum(), (x, k))
    g_ref = torch.autograd.grad(ref.square().sum(), (x, k))
    for gf, gr in zip(g_fast, g_ref):
        torch.testing.assert_close(gf, gr, rtol=1e-3, atol=1e-3 * gr.abs().max().item())


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("path", ["triton", "mamba_ssm"])
def test_fused_add_rms_norm_matches_reference(monkeypatch, path):
    from mqarbench.kernels.add_rms_norm import add_norm_impl, add_rms_norm_ref

    monkeypatch.setenv("MQARBENCH_RMS_NORM", path)
    fused, choice = add_norm_impl(torch.device("cuda"))
    assert choice.fast, choice
    hidden = torch.randn(4, 64, 96, device="cuda", dtype=torch.bfloat16)
    residual = torch.randn(4, 64, 96, device="cuda")
    weight = torch.rand(96, device="cuda") + 0.5
    for res in (None, residual):
        normed, new_res = fused(hidden, res, weight, 1e-5)
        normed_ref, res_ref = add_rms_norm_ref(hidden, res, weight, 1e-5)
        assert new_res.dtype == torch.float32
        torch.testing.assert_close(new_res, res_ref)
        torch.testing.assert_close(normed.float(), normed_ref.float(), rtol=2e-2, atol=2e-2)
