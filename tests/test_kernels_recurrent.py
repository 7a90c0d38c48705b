"""SSD (Mamba-2), GLA, the (gated) delta rule and RWKV-7: references against step loops and
against each other's special cases; fast paths against references on the GPU."""


import pytest
import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, force_reference
from mqarbench.kernels.delta_rule import FLA_GATED_REFUSED, delta_chunked, delta_impl, delta_recurrent
from mqarbench.kernels.gla import gla_chunked, gla_impl, gla_recurrent
from mqarbench.kernels.rwkv7 import LOG_DECAY_MIN, rwkv7_impl, rwkv7_recurrent
from mqarbench.kernels.ssd import ssd_chunked, ssd_impl, ssd_recurrent


def randn(*shape, gen, device="cpu", dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device, dtype)


def ssd_inputs(batch=2, length=37, heads=4, width=8, groups=2, state=5, seed=0, device="cpu",
               dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = randn(batch, length, heads, width, gen=gen, device=device, dtype=dtype)
    dt_raw = randn(batch, length, heads, gen=gen, device=device, dtype=dtype)
    b, c = (randn(batch, length, groups, state, gen=gen, device=device, dtype=dtype) for _ in range(2))
    # per-head parameters: fp32 as in the models (fp64 only in the exact CPU tests)
    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    a = -torch.exp(randn(heads, gen=gen)).to(device, param_dtype)  # per-head decay rates
    d, dt_bias = (randn(heads, gen=gen).to(device, param_dtype) + shift for shift in (0, -2))
    return [x, dt_raw, a, b, c, d, dt_bias]


def gla_inputs(batch=2, length=37, heads=3, k_dim=8, v_dim=6, seed=0, device="cpu", dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    q, k = (randn(batch, length, heads, k_dim, gen=gen, device=device, dtype=dtype) for _ in range(2))
    v = randn(batch, length, heads, v_dim, gen=gen, device=device, dtype=dtype)
    g = (F.logsigmoid(randn(batch, length, heads, k_dim, gen=gen)) / 4).to(device)
    return [q, k, v, g]


def assert_forward_and_grads_close(fn_got, fn_expected, inputs, names, atol=1e-10):
    inputs = [t.requires_grad_() if t.is_floating_point() else t for t in inputs]
    expected = fn_expected(*inputs)
    grads_expected = torch.autograd.grad(expected.square().sum(), inputs)
    got = fn_got(*inputs)
    grads_got = torch.autograd.grad(got.square().sum(), inputs)
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, atol=atol, rtol=0)
    for name, g_got, g_exp in zip(names, grads_got, grads_expected):
        g_scale = g_exp.abs().max()
        torch.testing.assert_close(g_got / g_scale, g_exp / g_scale, atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("length,chunk", [(37, 16), (32, 8), (5, 16), (64, 64)])
def test_ssd_chunked_matches_step_loop_forward_and_grads(length, chunk):
    assert_forward_and_grads_close(lambda *t: ssd_chunked(*t, chunk=chunk), ssd_recurrent,
                                   ssd_inputs(length=length), ["x", "dt", "A", "B", "C", "D", "dt_bias"])


def test_ssd_step_loop_matches_the_unrolled_sum():
    """y_t = sum_{s<=t} (C_t . B_s) exp(A sum_{s<m<=t} dt_m) dt_s x_s + D x_t, written out."""
    x, dt_raw, a, b, c, d, dt_bias = ssd_inputs(length=6, heads=2, groups=1)
    dt = F.softplus(dt_raw + dt_bias)  # (B, T, H)
    expected = d[:, None] * x
    for t in range(6):
        for s in range(t + 1):
            decay = torch.exp(a * dt[:, s + 1:t + 1].sum(1))  # (B, H)
            cb = (c[:, t, 0] * b[:, s, 0]).sum(-1)  # (B,)
            expected[:, t] += (cb[:, None] * decay * dt[:, s])[..., None] * x[:, s]
    torch.testing.assert_close(ssd_recurrent(x, dt_raw, a, b, c, d, dt_bias), expected)


def test_ssd_chunked_survives_strong_decay():
    inputs = ssd_inputs(length=48)
    inputs[2] = inputs[2] * 1e4  # decays of exp(-1e4 dt): a factored exp(A_i) exp(-A_j) overflows
    out = ssd_chunked(*inputs, chunk=16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ssd_recurrent(*inputs))


@pytest.mark.parametrize("length", [37, 5])
def test_gla_chunked_matches_step_loop_forward_and_grads(length):
    assert_forward_and_grads_close(lambda *t: gla_chunked(*t, scale=0.3), lambda *t: gla_recurrent(*t, scale=0.3),
                                   gla_inputs(length=length), "qkvg")


def test_gla_chunked_computes_mixed_dtypes_in_the_widest():
    """fp32 activations with an fp64 gate (the GPU parity test's inputs) run in fp64, not fail."""
    q, k, v, g = gla_inputs(length=21)
    q32, k32, v32 = (t.float() for t in (q, k, v))
    out = gla_chunked(q32, k32, v32, g, scale=0.3)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, gla_recurrent(q32.double(), k32.double(), v32.double(), g, scale=0.3))


def delta_inputs(batch=2, length=19, heads=3, k_dim=8, v_dim=6, seed=0, device="cpu", dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    q = randn(batch, length, heads, k_dim, gen=gen, device=device, dtype=dtype)
    k = F.normalize(randn(batch, length, heads, k_dim, gen=gen), dim=-1).to(device, dtype)
    v = randn(batch, length, heads, v_dim, gen=gen, device=device, dtype=dtype)
    beta = torch.sigmoid(randn(batch, length, heads, gen=gen)).to(device, dtype)
    g = (F.logsigmoid(randn(batch, length, heads, gen=gen) + 2)).to(device)
    return q, k, v, beta, g


def test_delta_rule_overwrites_the_value_of_a_repeated_key():
    """beta = 1 replaces what the state holds for k: write (k, v1), then (k, v2); k recalls v2."""
    k = F.normalize(torch.randn(1, 1, 1, 8, dtype=torch.float64), dim=-1).expand(1, 2, 1, 8)
    v = torch.randn(1, 2, 1, 4, dtype=torch.float64)
    out = delta_recurrent(k, k, v, torch.ones(1, 2, 1, dtype=torch.float64), None, scale=1.0)
    torch.testing.assert_close(out[0, 1, 0], v[0, 1, 0])


def strong_gates(g, seed=1, factor=20.0):
    """About a third of the gates 20x stronger: log decays down to about -100 per step."""
    strong = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < 0.3
    return g * torch.where(strong, factor, 1.0).to(g)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated_delta"])
@pytest.mark.parametrize("length,chunk", [(37, 16), (64, 16), (5, 64)])
def test_delta_chunked_matches_step_loop_forward_and_grads(gated, length, chunk):
    q, k, v, beta, g = delta_inputs(length=length)
    scale = 8 ** -0.5
    if gated:
        assert_forward_and_grads_close(lambda *t: delta_chunked(*t, scale, chunk=chunk),
                                       lambda *t: delta_recurrent(*t, scale),
                                       [q, k, v, beta, strong_gates(g)], ["q", "k", "v", "beta", "g"], atol=1e-9)
    else:
        assert_forward_and_grads_close(lambda *t: delta_chunked(*t, None, scale, chunk=chunk),
                                       lambda *t: delta_recurrent(*t, None, scale),
                                       [q, k, v, beta], ["q", "k", "v", "beta"], atol=1e-9)


def test_delta_chunked_survives_strong_gates():
    """fp32 (the GPU's precision) with every gate 20x stronger: G_i - G_j spans far more than 88
    inside a chunk, so exp(G_i - G_j) above the diagonal overflows fp32 unless masked before the exp
    (a tril after it leaves the backward 0 * inf = nan)."""
    q, k, v, beta, g = (t.float() for t in delta_inputs(length=64))
    inputs = [t.requires_grad_() for t in (q, k, v, beta, g * 20)]
    assert (g * 20).sum(1).min() < -200  # the spread of G within the one chunk
    out = delta_chunked(*inputs, 0.3, chunk=64)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    assert all(torch.isfinite(t).all() for t in (out, *grads))
    torch.testing.assert_close(out, delta_recurrent(*inputs, 0.3), atol=1e-5, rtol=1e-4)


def test_delta_chunked_keeps_fp32_for_16_bit_inputs():
    q, k, v, beta, g = (t.bfloat16() for t in delta_inputs(length=21))
    out = delta_chunked(q, k, v, beta, g, 0.3, chunk=8)
    assert out.dtype == torch.float32 == delta_recurrent(q, k, v, beta, g, 0.3).dtype
    torch.testing.assert_close(out, delta_recurrent(q, k, v, beta, g, 0.3), atol=1e-5, rtol=1e-5)


def test_delta_chunked_runs_in_fp32_under_autocast():
    """The training loop's bf16 autocast must not round the state's matmuls (CPU autocast stands in)."""
    q, k, v, beta, g = delta_inputs(length=100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = delta_chunked(*(t.float() for t in (q, k, v, beta, g)), 0.3, chunk=16)
    torch.testing.assert_close(out.double(), delta_recurrent(q, k, v, beta, g, 0.3), atol=1e-5, rtol=1e-5)


def test_delta_rules_are_rwkv7_special_cases():
    """(Gated) delta rule = RWKV-7's update with w = g, a = -k exp(g), b = beta k and the written
    key beta k: two independent step loops agree."""
    q, k, v, beta, g = delta_inputs()
    scale = 8 ** -0.5
    for log_alpha in (None, g):
        w = torch.zeros_like(k) if log_alpha is None else log_alpha[..., None].expand_as(k)
        expected = rwkv7_recurrent(q * scale, w, beta[..., None] * k, v, -k * w.exp(), beta[..., None] * k)
        torch.testing.assert_close(delta_recurrent(q, k, v, beta, log_alpha, scale), expected)


def test_rwkv7_without_the_delta_term_is_gla():
    q, k, v, g = gla_inputs()
    zeros = torch.zeros_like(k)
    torch.testing.assert_close(rwkv7_recurrent(q, g, k, v, zeros, zeros), gla_recurrent(q, k, v, g, 1.0))


def test_cpu_dispatch_takes_the_references():
    cpu = torch.device("cpu")
    assert ssd_impl(cpu)[0] is ssd_chunked and gla_impl(cpu)[0] is gla_chunked
    assert delta_impl(cpu, True)[0] is delta_recurrent and rwkv7_impl(cpu)[0] is rwkv7_recurrent
    assert not any(impl(cpu)[1].fast for impl in (ssd_impl, gla_impl, rwkv7_impl))


# ---- GPU: fast paths against references in fp32 and bf16 (pytest -m gpu) ----

TOLERANCES = [(torch.float32, 1e-2), (torch.bfloat16, 8e-2)]  # as test_fla_rwkv6_matches_reference_on_gpu


def assert_fast_matches_reference(fast, reference, inputs, names, tol):
    inputs = [t.requires_grad_() if t.is_floating_point() else t for t in inputs]
    out = fast(*inputs)
    grads = torch.autograd.grad(out.float().square().sum(), inputs)
    out_ref = reference(*inputs)
    grads_ref = torch.autograd.grad(out_ref.float().square().sum(), inputs)
    errors = {}
    for name, got, expected in [("output", out, out_ref)] + list(zip(names, grads, grads_ref)):
        scale = expected.float().abs().max().clamp_min(1e-6)
        errors[name] = ((got.float() - expected.float()).abs().max() / scale).item()
    # every error on one short line, so a failure says which tensor and by how much
    assert max(errors.values()) < tol, " ".join(f"{k}={v:.1e}" for k, v in errors.items())


@pytest.mark.gpu
@pytest.mark.triton_autotune
@pytest.mark.parametrize("dtype,tol", TOLERANCES)
def test_mamba_ssm_ssd_matches_reference_on_gpu(dtype, tol):
    fn, choice = ssd_impl(torch.device("cuda"))
    assert choice.fast, choice.missing
    inputs = ssd_inputs(batch=2, length=300, heads=4, width=64, groups=1, state=64, device="cuda", dtype=dtype)
    assert_fast_matches_reference(fn, ssd_chunked, inputs, ["x", "dt", "A", "B", "C", "D", "dt_bias"], tol)


@pytest.mark.gpu
@pytest.mark.triton_autotune
@pytest.mark.parametrize("dtype,tol", TOLERANCES)
def test_fla_gla_matches_reference_on_gpu(dtype, tol):
    fn, choice = gla_impl(torch.device("cuda"))
    assert choice.fast, choice.missing
    inputs = gla_inputs(batch=2, length=200, heads=4, k_dim=64, v_dim=64, device="cuda", dtype=dtype)
    assert_fast_matches_reference(lambda *t: fn(*t, 0.125), lambda *t: gla_chunked(*t, 0.125), inputs, "qkvg", tol)


@pytest.mark.gpu
@pytest.mark.triton_autotune
@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated_delta"])
@pytest.mark.parametrize("dtype,tol", TOLERANCES)
def test_fla_delta_rules_match_reference_on_gpu(gated, dtype, tol):
    fn, choice = delta_impl(torch.device("cuda"), gated)  # delta_chunked where fla refuses or is missing
    assert choice.fast, choice.missing
    if not gated:  # fla's chunk_delta_rule takes 16-bit inputs only: fp32 ones are computed in bf16
        tol = TOLERANCES[-1][1]
    q, k, v, beta, g = delta_inputs(batch=2, length=200, heads=4, k_dim=64, v_dim=64, device="cuda", dtype=dtype)
    q = F.normalize(q.float(), dim=-1).to(dtype)  # the models normalise q as k
    if gated:
        inputs, names = [q, k, v, beta, g], ["q", "k", "v", "beta", "g"]
        args = lambda fn_: (lambda *t: fn_(*t, 0.125))  # noqa: E731
    else:
        inputs, names = [q, k, v, beta], ["q", "k", "v", "beta"]
        args = lambda fn_: (lambda *t: fn_(*t, None, 0.125))  # noqa: E731
    with force_reference():
        reference = args(delta_impl(torch.device("cuda"), gated)[0])
    assert_fast_matches_reference(args(fn), reference, inputs, names, tol)


@pytest.mark.gpu
@pytest.mark.triton_autotune
@pytest.mark.parametrize("dtype,tol", TOLERANCES)
def test_fla_rwkv7_matches_reference_on_gpu(dtype, tol):
    fn, choice = rwkv7_impl(torch.device("cuda"))
    assert choice.fast, choice.missing
    gen = torch.Generator().manual_seed(0)
    shape = (2, 200, 4, 64)
    r, k, v = (randn(*shape, gen=gen, device="cuda", dtype=dtype) for _ in range(3))
    w = (LOG_DECAY_MIN * torch.rand(*shape, generator=gen, dtype=torch.float64)).float().cuda()
    kk = F.normalize(randn(*shape, gen=gen), dim=-1)
    iclr = torch.rand(*shape, generator=gen, dtype=torch.float64)
    a, b = (-kk).to("cuda", dtype), (kk * iclr).to("cuda", dtype)
    k = k * 0.1  # RWKV-7's k projection starts at gain 0.1; keeps the state O(1) over 200 steps
    assert_fast_matches_reference(fn, rwkv7_recurrent, [r, w, k, v, a, b], "rwkvab", tol)


@pytest.mark.gpu
def test_forced_reference_on_gpu_takes_the_new_references():
    cuda = torch.device("cuda")
    with force_reference():
        assert ssd_impl(cuda)[0] is ssd_chunked and gla_impl(cuda)[0] is gla_chunked
        assert delta_impl(cuda, False)[0] is delta_recurrent and rwkv7_impl(cuda)[0] is rwkv7_recurrent


def fake_fla(monkeypatch, hopper=True, triton_3_4=True, triton_3_7_1=False, importable=True):
    """fla "importable" (or not) with the given GPU and Triton, for choices asked on "cuda" (choose()
    only reads the device type)."""
    import sys
    import types

    from mqarbench.kernels import delta_rule, fla_ops

    fla_utils = types.SimpleNamespace(IS_NVIDIA_HOPPER=hopper, TRITON_ABOVE_3_4_0=triton_3_4,
                                      TRITON_ABOVE_3_7_1=triton_3_7_1)
    monkeypatch.setitem(sys.modules, "fla", types.SimpleNamespace(utils=fla_utils))
    monkeypatch.setitem(sys.modules, "fla.utils", fla_utils)
    found = (object(), "") if importable else (None, "flash-linear-attention not importable (...)")
    for module in (delta_rule, fla_ops):
        monkeypatch.setattr(module, "fla_op", lambda module, name: found)


@pytest.mark.parametrize("hopper,triton_3_4,triton_3_7_1,refused", [
    (True, True, False, True),     # fla refuses the gated backward here (its issue #640)
    (True, True, True, False),     # a fixed Triton
    (False, True, False, False),   # not a Hopper GPU
])
def test_gated_delta_rule_takes_delta_chunked_where_fla_refuses_it(monkeypatch, hopper, triton_3_4,
                                                                   triton_3_7_1, refused):
    fake_fla(monkeypatch, hopper, triton_3_4, triton_3_7_1)
    fn, choice = delta_impl(torch.device("cuda"), gated=True)
    assert choice.fast  # a fast path either way: the runner trains on it
    assert (fn is delta_chunked) == refused and (fn is not delta_recurrent)
    assert (choice.path == "torch.delta_chunked") == refused
    assert (choice.missing == FLA_GATED_REFUSED) == refused  # why fla's kernel is not taken stays recorded
    fn, choice = delta_impl(torch.device("cuda"), gated=False)  # the ungated kernel is unaffected
    assert choice == KernelChoice("fla.ops.delta_rule.chunk_delta_rule", True) and fn is not delta_chunked


def test_delta_rules_take_delta_chunked_on_cuda_without_fla(monkeypatch):
    fake_fla(monkeypatch, importable=False)
    for gated in (False, True):
        fn, choice = delta_impl(torch.device("cuda"), gated)
        assert fn is delta_chunked and choice.fast and choice.path == "torch.delta_chunked"
        assert "not importable" in choice.missing
        with force_reference():  # forcing the reference still wins
            assert delta_impl(torch.device("cuda"), gated) == (delta_recurrent,
                                                               KernelChoice("reference.delta_recurrent", False))


def test_gated_deltanet_where_fla_refuses_is_not_a_slow_path(monkeypatch):
    import mqarbench.kernels as kernels
    from mqarbench.models.registry import load_adapter

    fake_fla(monkeypatch)  # a Hopper GPU with Triton 3.6: fla refuses the gated kernel
    monkeypatch.setattr(kernels, "module_device", lambda module: torch.device("cuda"))
    model = load_adapter("gated_deltanet").build("tiny", 64, 64)
    assert kernels.kernel_paths(model)["gated_delta_rule"] == "torch.delta_chunked"
    slow = kernels.slow_paths(model)  # only ops outside fla (the short convs) may remain there
    assert not [line for line in slow if line.startswith("gated_delta_rule")], slow


def test_delta_reference_takes_a_wider_gate_than_its_inputs():
    """fp32 q, k, v, beta with an fp64 g (as the GPU parity test passes them): computed in fp64,
    equal to the all-fp64 call; the state never changes dtype between two steps."""
    q, k, v, beta, g = delta_inputs()  # fp64
    mixed = delta_recurrent(q.float(), k.float(), v.float(), beta.float(), g, scale=0.5)
    exact = delta_recurrent(q.float().double(), k.float().double(), v.float().double(),
                            beta.float().double(), g, scale=0.5)
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, exact)
