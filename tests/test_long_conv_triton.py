"""The Triton long conv (mqarbench.kernels.long_conv_triton) against long_conv_direct: forward and
both gradients, in Triton's CPU interpreter here and compiled on CUDA with -m gpu.

The interpreter needs TRITON_INTERPRET=1 before triton itself is imported (triton.language's own
helpers, tl.zeros and tl.sum, are jit functions decorated then), and setting it in this process
would turn every Triton kernel imported later into an interpreted one, the GPU test's included.
So one worker subprocess, this file run as a script with TRITON_INTERPRET=1, computes every
interpreter check once and the tests below read its results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")

from mqarbench.kernels import long_conv_triton as lct  # noqa: E402 - only once triton imports
from mqarbench.kernels.long_conv import long_conv_direct  # noqa: E402

# (B, D, L, K, target programs): L not a multiple of the time block; K > L, with tap L - 1
# opening a tap block of the kernel gradient; K = 1; D not a multiple of BLOCK_D; a small target
# makes the kernel gradient split the batch 2 ways over 3 rows (and 1 way), so a program loops
# over several batch rows.
CASES = [
    (2, 20, 150, 37, 1024),
    (1, 3, 33, 64, 1024),
    (2, 17, 33, 1, 1024),
    (3, 20, 70, 20, 8),
    (3, 5, 24, 9, 1),
]
CASE_IDS = ["-".join(map(str, case)) for case in CASES]


def _inputs(batch, dim, length, width, device="cpu", dtype=torch.float32):
    x = torch.randn(batch, length, dim, device=device).transpose(1, 2)  # (B, D, L), not contiguous
    kernel = torch.randn(dim, width, device=device) / width ** 0.5  # (D, K)
    return x.to(dtype).requires_grad_(), kernel.requires_grad_()


def _ratio(got, expected, tol=1e-5):
    """Worst |got - expected| / (atol + rtol |expected|) with rtol = tol and atol = tol times
    the reference's largest magnitude (at least 1): assert_close's rule, passing at <= 1."""
    expected = expected.detach().float()
    scale = max(1.0, expected.abs().max().item())
    bound = tol * scale + tol * expected.abs()
    return ((got.detach().float() - expected).abs() / bound).max().item()


def _close(got, expected, tol=1e-5):
    ratio = _ratio(got, expected, tol)
    assert ratio <= 1, f"error {ratio:.2f}x the tolerance {tol}"


def _interpreter_checks() -> dict:
    """Every interpreter check: error ratios (pass at <= 1) and output dtypes, by name."""
    results = {}
    for case_id, (batch, dim, length, width, target) in zip(CASE_IDS, CASES):
        lct.TARGET_PROGRAMS = target
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
    lct.TARGET_PROGRAMS = 1024
    torch.manual_seed(2)
    x, kernel = _inputs(2, 20, 90, 24, dtype=torch.bfloat16)  # x bf16 as under autocast
    x32 = x.detach().float().requires_grad_()  # bf16 -> fp32 is exact: the same sums in fp32
    out, ref = lct.long_conv_triton(x, kernel), long_conv_direct(x32, kernel)
    dout = torch.randn_like(ref)
    dx, dkernel = torch.autograd.grad(out, (x, kernel), dout)
    dx_ref, dkernel_ref = torch.autograd.grad(ref, (x32, kernel), dout)
    results["bf16"] = {
        "out": _ratio(out, ref), "dkernel": _ratio(dkernel, dkernel_ref),
        "dx": _ratio(dx, dx_ref.to(torch.bfloat16), 1e-2),  # the fp32 gradient rounded to bf16
        "dtypes": [str(t.dtype) for t in (out, dx, dkernel)]}
    return results


def _backport_index_fix() -> None:
    """Triton 3.6's interpreter holds scalars as shape-(1,) arrays and a range() over one calls
    int() on it, which numpy >= 2.4 refuses (triton-lang/triton#9171, fixed upstream by #9172).
    Backported here, in the worker only; harmless where the fix is already in."""
    from triton.runtime import interpreter

    patch_tensor = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


@pytest.fixture(scope="module")
def interpreted() -> dict:
    """The worker's results (one subprocess for the whole module)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    run = subprocess.run([sys.executable, __file__], env=env, cwd=root, capture_output=True,
                         text=True, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"interpreter worker failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


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


def test_bf16_input_gives_fp32_output(interpreted):
    result = interpreted["bf16"]
    assert result["dtypes"] == ["torch.float32", "torch.bfloat16", "torch.float32"]
    for name in ("out", "dx", "dkernel"):
        assert result[name] <= 1, f"{name} error {result[name]:.2f}x the tolerance"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-5)])
@pytest.mark.parametrize("shape", [(4, 200, 1000, 128), (2, 70, 64, 256), (8, 96, 512, 1)])
def test_matches_direct_on_gpu(shape, dtype, tol):
    torch.manual_seed(3)
    x, kernel = _inputs(*shape, device="cuda", dtype=dtype)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the direct reference in true fp32
    try:
        x32 = x.detach().float().requires_grad_()
        out, ref = lct.long_conv_triton(x, kernel), long_conv_direct(x32, kernel)
        assert out.dtype == torch.float32
        _close(out, ref, tol)
        dout = torch.randn_like(ref)
        dx, dkernel = torch.autograd.grad(out, (x, kernel), dout)
        dx_ref, dkernel_ref = torch.autograd.grad(ref, (x32, kernel), dout)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    _close(dx.float(), dx_ref.to(dtype).float(), tol if dtype == torch.float32 else 1e-2)
    _close(dkernel, dkernel_ref, 1e-4)  # sums of B L products in another order


if __name__ == "__main__":  # the interpreter worker, started by the ``interpreted`` fixture
    _backport_index_fix()
    print(json.dumps(_interpreter_checks()))
