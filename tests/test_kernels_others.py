"""Attention, RWKV-6 WKV and Hyena's FFT convolution: fast paths against their references."""

import pytest
import torch
import torch.nn.functional as F

from mqarbench.kernels import force_reference
from mqarbench.kernels.attention import attention_impl, causal_attention_reference
from mqarbench.kernels.long_conv import long_conv_direct, long_conv_fft
from mqarbench.kernels.rwkv import wkv6_chunked, wkv6_impl, wkv6_recurrent


def random_wkv(batch=2, length=37, heads=3, width=8, device="cpu", dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r, k, v = torch.randn(3, batch, length, heads, width, generator=gen)
    log_decay = -torch.exp(torch.randn(batch, length, heads, width, generator=gen) * 2)
    bonus = torch.randn(heads, width, generator=gen)
    return [t.to(device, dtype) for t in (r, k, v)] + [log_decay.to(device), bonus.to(device)]


def wkv6_closed_form(r, k, v, w, u):
    """o_t = sum_{j<t} (r_t . prod_{j<m<t} e^{w_m} . k_j) v_j + (r_t . u . k_t) v_t, in fp64."""
    r, k, v, w, u = (t.double() for t in (r, k, v, w, u))
    length = r.shape[1]
    out = torch.zeros_like(v)
    for t in range(length):
        out[:, t] = torch.einsum("bhk,bhk,bhv->bhv", r[:, t], u * k[:, t], v[:, t])
        for j in range(t):
            decay = w[:, j + 1:t].sum(dim=1).exp()  # (B, H, K)
            out[:, t] += torch.einsum("bhk,bhk,bhv->bhv", r[:, t] * decay, k[:, j], v[:, j])
    return out


def test_attention_reference_matches_sdpa_math_backend():
    q, k, v = torch.randn(3, 2, 3, 29, 16).unbind(0)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(causal_attention_reference(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_attention_dispatch_on_cpu_is_the_reference():
    fn, choice = attention_impl(torch.device("cpu"))
    assert fn is causal_attention_reference and not choice.fast


def test_wkv6_recurrent_matches_closed_form():
    inputs = random_wkv(length=9, heads=2, width=4)
    torch.testing.assert_close(wkv6_recurrent(*inputs).double(), wkv6_closed_form(*inputs),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("length,chunk", [(37, 16), (32, 8), (5, 16), (64, 64)])
def test_wkv6_chunked_matches_recurrent_forward_and_grads(length, chunk):
    inputs = [t.double().requires_grad_() for t in random_wkv(length=length)]
    expected = wkv6_recurrent(*inputs)
    grads_expected = torch.autograd.grad(expected.square().sum(), inputs)
    got = wkv6_chunked(*inputs, chunk=chunk)
    grads_got = torch.autograd.grad(got.square().sum(), inputs)
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, atol=1e-10, rtol=0)
    for name, g_got, g_exp in zip("rkvwu", grads_got, grads_expected):
        g_scale = g_exp.abs().max()
        torch.testing.assert_close(g_got / g_scale, g_exp / g_scale, atol=1e-10, rtol=0, msg=name)


def test_wkv6_chunked_survives_strong_decay():
    r, k, v, w, u = random_wkv(length=48)
    w = w * 1e4  # decays of exp(-1e4): a factored exp(A_i) exp(-A_j) form overflows here
    out = wkv6_chunked(r, k, v, w, u)
    assert torch.isfinite(out).all()
    expected = wkv6_recurrent(r, k, v, w, u)
    scale = expected.abs().max()
    torch.testing.assert_close(out / scale, expected / scale, atol=1e-5, rtol=0)


def test_wkv6_dispatch_on_cpu_is_the_chunked_reference():
    fn, choice = wkv6_impl(torch.device("cpu"))
    assert fn is wkv6_chunked and not choice.fast


@pytest.mark.parametrize("length", [1, 17, 64])
def test_hyena_length_fft_conv_matches_direct(length):
    """Hyena's filters are as long as the input: kernel width == L."""
    x, kernel = torch.randn(2, 6, length), torch.randn(6, length)
    torch.testing.assert_close(long_conv_fft(x, kernel), long_conv_direct(x, kernel),
                               atol=1e-4, rtol=1e-4)


# ---- GPU: fast paths against references (pytest -m gpu) ----

def _relative_error(got, expected):
    scale = expected.float().abs().max().clamp_min(1e-6)
    return ((got.float() - expected.float()).abs().max() / scale).item()


def _relative_close(got, expected, tol, msg=""):
    err = _relative_error(got, expected)
    assert err < tol, f"{msg}: relative max error {err:.2e} >= {tol}"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 3e-2)])
def test_sdpa_matches_reference_on_gpu(dtype, tol):
    fn, choice = attention_impl(torch.device("cuda"))
    assert choice.fast and choice.path == "sdpa"
    q, k, v = (torch.randn(4, 12, 512, 64, device="cuda", dtype=dtype).requires_grad_()
               for _ in range(3))
    out = fn(q, k, v)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    out_ref = causal_attention_reference(q, k, v)
    grads_ref = torch.autograd.grad(out_ref.float().square().sum(), (q, k, v))
    _relative_close(out, out_ref, tol, "output")
    for name, g, g_ref in zip("qkv", grads, grads_ref):
        _relative_close(g, g_ref, tol, f"d{name}")


@pytest.mark.gpu
@pytest.mark.triton_autotune
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-2), (torch.bfloat16, 8e-2)])
def test_fla_rwkv6_matches_reference_on_gpu(dtype, tol):
    fn, choice = wkv6_impl(torch.device("cuda"))
    assert choice.fast, choice.missing
    inputs = random_wkv(batch=4, length=200, heads=4, width=64, device="cuda", dtype=dtype)
    inputs[3] = inputs[3] * 0.1  # decays near RWKV's range: exp(-0.1 e^N(0,4))
    inputs = [t.requires_grad_() for t in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad(out.float().square().sum(), inputs)
    out_ref = wkv6_chunked(*inputs)
    grads_ref = torch.autograd.grad(out_ref.float().square().sum(), inputs)
    errors = {name: _relative_error(got, expected) for name, got, expected
              in [("output", out, out_ref)] + list(zip(["dr", "dk", "dv", "dw", "du"], grads, grads_ref))}
    # every error on one short line: a failure says which tensor and by how much
    assert max(errors.values()) < tol, " ".join(f"{k}={v:.1e}" for k, v in errors.items())


@pytest.mark.gpu
def test_hyena_fft_conv_matches_direct_on_gpu():
    x, kernel = torch.randn(8, 864, 1024, device="cuda"), torch.randn(864, 1024, device="cuda")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the direct reference in true fp32
    try:
        _relative_close(long_conv_fft(x, kernel), long_conv_direct(x, kernel), 1e-4, "fft conv")
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.gpu
def test_forced_reference_on_gpu_takes_the_references():
    with force_reference():
        assert attention_impl(torch.device("cuda"))[0] is causal_attention_reference
        assert wkv6_impl(torch.device("cuda"))[0] is wkv6_chunked
