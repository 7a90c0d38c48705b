"""The Triton long conv (mqarbench.kernels.long_conv_triton) against long_conv_direct: forward and
both gradients, in Triton's CPU interpreter here (one worker subprocess, this file run as a
script: tests/triton_interpreter.py says why) and compiled on CUDA with -m gpu.
"""

from __future__ import annotations

import json

import pytest
import torch
from triton_interpreter import patch_interpreter, run_interpreter_worker

triton = pytest.importorskip("triton")

from mqarbench.kernels import long_conv_triton as lct  # noqa: E402 - only once triton imports
from mqarbench.kernels.long_conv import long_conv_direct  # noqa: E402

# (B, D, L, K, target programs, largest time block), with the blocks _blocks picks (BB, BT, KP):
# L = 150 is three time blocks of 64, the last partial; K > L leaves 33 taps, so KP = 32 = taps - 1
# (the last tap reaches the halo's far end) over three blocks of 16; K = 1 (KP = 16); D odd;
# B = 33 is two batch blocks of 32 (one row in the second), which a target of 1 program leaves to
# one kernel-gradient program per channel and a target of 1024 splits over two programs; K = 34
# needs KP = 64, four time blocks of 16 (as K = 128 needs two of 64 on the GPU).
CASES = [
    (2, 20, 150, 37, 1024, 64),
    (1, 3, 33, 64, 1024, 16),
    (2, 17, 33, 1, 1024, 16),
    (3, 20, 70, 20, 8, 64),
    (3, 5, 24, 9, 1, 64),
    (33, 3, 40, 9, 1, 16),
    (33, 2, 20, 5, 1024, 64),
    (2, 6, 100, 34, 1024, 16),
]
CASE_IDS = ["-".join(map(str, case)) for case in CASES]


def _inputs(batch, dim, length, width, device="cpu", dtype=torch.float32, exact=True):
    """x (B, D, L) in dtype and an fp32 kernel (D, K). With bf16 x the kernels round the kernel
    (and dout) to bf16 for the matmuls; ``exact`` gives it bf16 values, so that rounding is exact
    and the result must match the fp32 reference tightly."""
    x = torch.randn(batch, length, dim, device=device).transpose(1, 2)  # (B, D, L), not contiguous
    kernel = torch.randn(dim, width, device=device) / width ** 0.5  # (D, K)
    if exact:
        kernel = kernel.to(dtype).float()
    return x.to(dtype).requires_grad_(), kernel.requires_grad_()


def _bf16_checks(shape, device, exact, tol, dkernel_tol=None):
    """Error ratios of bf16 x against long_conv_direct on the same values in fp32, and dtypes."""
    x, kernel = _inputs(*shape, device=device, dtype=torch.bfloat16, exact=exact)
    x32 = x.detach().float().requires_grad_()  # bf16 -> fp32 is exact: the same sums in fp32
    out, ref = lct.long_conv_triton(x, kernel), long_conv_direct(x32, kernel)
    dout = torch.randn_like(ref)
    if exact:
        dout = dout.bfloat16().float()
    dx, dkernel = torch.autograd.grad(out, (x, kernel), dout)
    dx_ref, dkernel_ref = torch.autograd.grad(ref, (x32, kernel), dout)
    return {
        "out": _ratio(out, ref, tol), "dkernel": _ratio(dkernel, dkernel_ref, dkernel_tol or tol),
        "dx": _ratio(dx, dx_ref.to(torch.bfloat16), 1e-2),  # the fp32 gradient rounded to bf16
        "dtypes": [str(t.dtype) for t in (out, dx, dkernel)]}


def _ratio(got, expected, tol=1e-5):
    """Worst |got - expected| / (atol + rtol |expected|) with rtol = tol and atol = tol times
    the reference's largest magnitude (at least 1): assert_close's rule, passing at <= 1."""
    expected = expected.detach().float()
    scale = max(1.0, expected.abs().max().item())
    bound = tol * scale + tol * expected.abs()
    return ((got.detach().float() - expected).abs() / bound).max().item()


def _gate_checks(shape, bias, dtype, device="cpu", tol=1e-5):
    """gated_delta, gated_delta_backward and long_conv_input_grad against
    dt * SiLU(long_conv_direct(x) + bias) in fp32 autograd: error ratios of delta, dx, dkernel,
    dbias and d dt, of dx with another gradient added into a slice of a dxz-like buffer, and
    dtypes. x is a channel slice of a (B, 2D, L) tensor, dt and d dt (D, B, L) buffers seen as
    (B, D, L): the strides the fused mixer passes."""
    batch, dim, length, width = shape
    torch.manual_seed(4)
    x = torch.randn(batch, 2 * dim, length, device=device).to(dtype)[:, :dim]  # (B, D, L) view
    dt = torch.randn(dim, batch, length, device=device).to(dtype).transpose(0, 1)  # (B, D, L) view
    kernel = (torch.randn(dim, width, device=device) / width ** 0.5).to(dtype).float()
    b = (0.5 * torch.randn(dim, device=device)).to(dtype).float() if bias else None
    ddelta = torch.randn(batch, dim, length, device=device).to(dtype)
    delta = lct.gated_delta(x, kernel, b, dt)
    ddt_buf = torch.full((dim, batch, length), float("nan"), device=device, dtype=dtype)
    dpre, dkernel, dbias, ddt = lct.gated_delta_backward(x, kernel, b, dt, ddelta,
                                                         ddt_out=ddt_buf.transpose(0, 1))
    dx = lct.long_conv_input_grad(dpre, kernel)  # (B, D, L) fp32
    short = torch.randn(batch, dim, length, device=device).to(dtype)  # the short conv's dx
    dxz = torch.full((batch, 2 * dim, length), float("nan"), device=device, dtype=dtype)
    lct.long_conv_input_grad(dpre, kernel, add=short, out=dxz[:, :dim])
    leaves = [x.float().requires_grad_(), kernel.clone().requires_grad_(), dt.float().requires_grad_()]
    if bias:
        leaves.append(b.clone().requires_grad_())
    pre = long_conv_direct(leaves[0], leaves[1]) + (leaves[3][:, None] if bias else 0)
    ref = leaves[2] * torch.nn.functional.silu(pre)
    grads = torch.autograd.grad(ref, leaves, ddelta.float())
    checks = {"delta": _ratio(delta, ref, tol), "dx": _ratio(dx, grads[0], tol),
              "dkernel": _ratio(dkernel, grads[1], tol),
              "ddt": _ratio(ddt_buf.transpose(0, 1), grads[2], tol),
              "dx_plus": _ratio(dxz[:, :dim], grads[0] + short.float(), tol),
              "ddt_in_place": ddt.data_ptr() == ddt_buf.data_ptr(),
              "z_half_untouched": bool(dxz[:, dim:].isnan().all()),
              "dtypes": [str(t.dtype) for t in (delta, dx, dkernel, ddt, dpre)]}
    if bias:
        checks["dbias"] = _ratio(dbias, grads[3], tol)
    else:
        checks["dbias_none"] = dbias is None
    return checks


def _fused_mixer_checks(bias: bool) -> dict:
    """global_selection_inner_fn with the gate kernels (and reference conv and scan kernels)
    against the unfused mixer in fp32: error ratios of the output and every gradient."""
    import test_global_selection as tgs  # its reference kernels and call; a sibling of this file
    from baselines.global_mamba import GlobalSelectionMixer
    from mqarbench.kernels import global_selection as gs

    gs.KERNELS.update(conv=tgs.causal_conv1d_ref, scan_fwd=tgs._ref_scan_fwd,
                      scan_bwd=tgs._ref_scan_bwd)
    fused_gate, gs._fused_gate = gs._fused_gate, lambda device, width: True
    try:
        torch.manual_seed(2)
        mixer = GlobalSelectionMixer(16, 4, 4, 2, 2, long_kernel=12, bias=bias)
        hidden = torch.randn(3, 21, 16).requires_grad_()
        params = [hidden] + list(mixer.parameters())
        unfused, fused = mixer(hidden), tgs.fused_call(mixer, hidden)
        weights = torch.randn_like(unfused)
        got = torch.autograd.grad((fused * weights).sum(), params)
        want = torch.autograd.grad((unfused * weights).sum(), params)
    finally:
        gs._fused_gate = fused_gate
    names = ["hidden"] + [n for n, _ in mixer.named_parameters()]

    def relative(a, b):  # each tensor on its own scale: some gradients are far below 1
        scale = b.abs().max().clamp_min(1e-30)
        return _ratio(a / scale, b / scale, 1e-4)

    return {"out": relative(fused, unfused),
            **{name: relative(a, b) for name, a, b in zip(names, got, want)}}


GATE_CASES = {"gate-fp32-bias": ((3, 20, 70, 20), True), "gate-fp32": ((2, 17, 33, 1), False),
              "gate-fp32-long": ((33, 3, 150, 37), True)}


def _interpreter_checks() -> dict:
    """Every interpreter check: error ratios (pass at <= 1) and output dtypes, by name."""
    results = {}
    for case_id, (batch, dim, length, width, target, block_t) in zip(CASE_IDS, CASES):
        lct.TARGET_PROGRAMS, lct.MAX_BLOCK_T = target, block_t
        torch.manual_seed(0)
        x, kernel = _inputs(batch, dim, length, width)
        out, ref = lct.long_conv_triton(x, kernel), long_conv_direct(x, kernel)
        dout = torch.randn_like(ref)  # (B, D, L)
        grads = torch.autograd.grad(out, (x, kernel), dout)
        grads_ref = torch.autograd.grad(ref, (x, kernel), dout)
        results[case_id] = {
            "out": _ratio(out, ref), "dx": _ratio(grads[0], grads_ref[0]),
            "dkernel": _ratio(grads[1], grads_ref[1]),
            "dtypes": [str(t.dtype) for t in (out, *grads)], "shape": list(out.shape)}
    lct.TARGET_PROGRAMS, lct.MAX_BLOCK_T = 1024, 64
    torch.manual_seed(2)  # x bf16 as under autocast; operands bf16-exact, then rounded
    results["bf16"] = _bf16_checks((2, 20, 90, 24), "cpu", exact=True, tol=1e-5)
    results["bf16-rounded"] = _bf16_checks((2, 20, 90, 24), "cpu", exact=False, tol=1e-2)
    for name, (shape, bias) in GATE_CASES.items():
        results[name] = _gate_checks(shape, bias, torch.float32)
    # bf16 operands and a gate rounded to bf16: about 1e-2 (the interpreter truncates, see below)
    results["gate-bf16"] = _gate_checks((2, 20, 90, 24), True, torch.bfloat16, tol=3e-2)
    for bias in (True, False):
        results[f"mixer-bias-{bias}"] = _fused_mixer_checks(bias)
    return results


@pytest.fixture(scope="module")
def interpreted() -> dict:
    """The worker's results (one subprocess for the whole module)."""
    return run_interpreter_worker(__file__)


def test_triton_available():
    assert lct.triton_available() == (True, "")


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_forward_matches_direct(interpreted, case_id):
    result = interpreted[case_id]
    assert result["dtypes"][0] == "torch.float32"
    assert result["shape"] == list(CASES[CASE_IDS.index(case_id)][:3])
    assert result["out"] <= 1, f"output error {result['out']:.2f}x the tolerance"


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_gradients_match_direct(interpreted, case_id):
    result = interpreted[case_id]
    assert result["dtypes"][1:] == ["torch.float32", "torch.float32"]
    for name in ("dx", "dkernel"):
        assert result[name] <= 1, f"{name} error {result[name]:.2f}x the tolerance"


@pytest.mark.parametrize("check", ["bf16", "bf16-rounded"])
def test_bf16_input_gives_fp32_output(interpreted, check):
    """bf16 matmul operands: exact when the kernel and dout hold bf16 values, else about 1e-2."""
    result = interpreted[check]
    assert result["dtypes"] == ["torch.float32", "torch.bfloat16", "torch.float32"]
    for name in ("out", "dx", "dkernel"):
        assert result[name] <= 1, f"{name} error {result[name]:.2f}x the tolerance"
    if check == "bf16-rounded":  # the operands really are bf16 (tensor cores), not fp32
        assert result["out"] > 0.01, "no bf16 rounding: the bf16 path computed in fp32"


@pytest.mark.parametrize("case", [*GATE_CASES, "gate-bf16"])
def test_gated_delta_and_its_gradients_match_autograd(interpreted, case):
    """The gate epilogues: delta = dt * SiLU(conv + bias) and every gradient, strided inputs and
    outputs; dpre in the dtype the gradient kernels round their operands to."""
    result = interpreted[case]
    dtype = "torch.bfloat16" if case == "gate-bf16" else "torch.float32"
    assert result["dtypes"] == [dtype, "torch.float32", "torch.float32", dtype, dtype]
    _assert_gate_checks(result)


def _assert_gate_checks(result: dict) -> None:
    assert result.get("dbias_none", True)
    assert result["ddt_in_place"] and result["z_half_untouched"]
    for name in ("delta", "dx", "dkernel", "ddt", "dbias", "dx_plus"):
        if name in result:
            assert result[name] <= 1, f"{name} error {result[name]:.2f}x the tolerance"


@pytest.mark.parametrize("bias", [True, False])
def test_fused_mixer_with_gate_kernels_equals_the_unfused_mixer(interpreted, bias):
    """The glue of global_selection_inner_fn around gated_delta: output and every gradient."""
    result = interpreted[f"mixer-bias-{bias}"]
    assert len(result) == 1 + 1 + 10 + bias, sorted(result)  # out, hidden, every parameter
    for name, ratio in result.items():
        assert ratio <= 1, f"{name} error {ratio:.2f}x the tolerance"


@pytest.mark.gpu
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_gated_delta_matches_autograd_on_gpu(bias, dtype, tol):
    torch.backends.cudnn.allow_tf32, tf32 = False, torch.backends.cudnn.allow_tf32
    try:
        result = _gate_checks((8, 96, 512, 128), bias, dtype, device="cuda", tol=tol)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    _assert_gate_checks(result)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 200, 1000, 128), (2, 70, 64, 256), (8, 96, 512, 1)])
def test_matches_direct_on_gpu(shape, dtype):
    torch.manual_seed(3)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the direct reference in true fp32
    try:
        if dtype == torch.bfloat16:  # bf16-valued operands (tight), then any fp32 ones (loose)
            checks = {"exact": _bf16_checks(shape, "cuda", exact=True, tol=1e-5, dkernel_tol=1e-4),
                      "rounded": _bf16_checks(shape, "cuda", exact=False, tol=1e-2)}
        else:
            x, kernel = _inputs(*shape, device="cuda")
            out, ref = lct.long_conv_triton(x, kernel), long_conv_direct(x, kernel)
            dout = torch.randn_like(ref)
            dx, dkernel = torch.autograd.grad(out, (x, kernel), dout)
            dx_ref, dkernel_ref = torch.autograd.grad(ref, (x, kernel), dout)
            checks = {"fp32": {"out": _ratio(out, ref), "dx": _ratio(dx, dx_ref),
                               "dkernel": _ratio(dkernel, dkernel_ref, 1e-4),  # B L sums reordered
                               "dtypes": [str(t.dtype) for t in (out, dx, dkernel)]}}
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    for check, result in checks.items():
        assert result["dtypes"] == ["torch.float32", str(dtype), "torch.float32"]
        for name in ("out", "dx", "dkernel"):
            assert result[name] <= 1, f"{check} {name}: {result[name]:.2f}x the tolerance"


if __name__ == "__main__":  # the interpreter worker, started by the ``interpreted`` fixture
    patch_interpreter()
    print(json.dumps(_interpreter_checks()))
