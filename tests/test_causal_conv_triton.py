"""The Triton short-conv backward (mqarbench.kernels.causal_conv_triton) against autograd through
causal_conv1d_ref in fp64: x's, the weight's and the bias's gradients with their dtypes, with and
without silu and a bias, widths 2-4, lengths and channel counts that fill no block, channels-last
and sliced inputs, bf16 activations; bit-equal gradients from two calls. In Triton's CPU
interpreter here (tests/triton_interpreter.py) and compiled on CUDA with -m gpu, beside
causal_conv1d's own backward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from triton_interpreter import patch_interpreter, run_interpreter_worker

triton = pytest.importorskip("triton")

from mqarbench.kernels import causal_conv as cc  # noqa: E402 - only once triton imports
from mqarbench.kernels.causal_conv_triton import BLOCK_D, BLOCK_L, conv_backward_triton  # noqa: E402


@dataclass(frozen=True)
class Case:
    batch: int
    dim: int
    length: int
    width: int = 4
    silu: bool = True
    bias: bool = True
    dtype: torch.dtype = torch.float32  # of x and dout; the weight and bias stay fp32
    layout: str = "contiguous"  # or "channels_last" (unit stride along D), "slice" (of a wider tensor)


CASES = {
    "fp32-silu-bias": Case(2, BLOCK_D + 3, BLOCK_L + 5),  # two partial blocks each way
    "fp32-plain-w3": Case(2, 7, 19, width=3, silu=False, bias=False),
    "fp32-silu-w2-channels-last": Case(3, BLOCK_D + 1, 33, width=2, layout="channels_last"),
    "fp32-silu-nobias-slice": Case(2, 9, 40, bias=False, layout="slice"),
    "bf16-silu-bias": Case(2, BLOCK_D + 3, 70, dtype=torch.bfloat16),
}


def _inputs(case: Case, device: str):
    gen = torch.Generator().manual_seed(case.width + case.dim)
    x = torch.randn(case.batch, case.dim, case.length, generator=gen)  # (B, D, L)
    if case.layout == "channels_last":
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    elif case.layout == "slice":  # channels dim..2 dim of a (B, 2 D, L) tensor, as x of xz
        x = torch.cat([torch.randn(x.shape, generator=gen), x], 1)[:, case.dim:]
    weight = torch.randn(case.dim, case.width, generator=gen) / case.width ** 0.5
    bias = torch.randn(case.dim, generator=gen) if case.bias else None
    # bf16-representable, so the bf16 case and its fp64 reference see the same values
    dout = torch.randn(case.batch, case.dim, case.length, generator=gen).bfloat16()
    x = x.to(case.dtype)
    return [t.to(device) if t is not None else None for t in (x, weight, bias, dout.to(case.dtype))]


def _reference(x, weight, bias, dout, silu: bool):
    leaves = [t.detach().double().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    out = cc.causal_conv1d_ref(*leaves, activation="silu" if silu else None)
    out.backward(dout.double())
    return [t.grad if t is not None else None for t in leaves]


def _ratio(got, want, tol):
    bound = tol * max(1.0, want.abs().max().item()) + tol * want.abs()
    return ((got.double() - want).abs() / bound).max().item()


def _checks(case: Case, device: str = "cpu") -> dict:
    x, weight, bias, dout = _inputs(case, device)
    got = conv_backward_triton(x, weight, bias, dout, case.silu)
    again = conv_backward_triton(x, weight, bias, dout, case.silu)
    want = _reference(x, weight, bias, dout, case.silu)
    # dx is rounded to x's dtype once; the weight's and bias's sums stay fp32 throughout
    tols = {"dx": 1e-5 if case.dtype == torch.float32 else 1e-2, "dweight": 1e-5, "dbias": 1e-5}
    checks = {name: _ratio(g, w, tols[name])
              for name, g, w in zip(tols, got, want) if w is not None}
    checks["dtypes"] = [str(g.dtype) if g is not None else None for g in got]
    checks["repeat"] = all(torch.equal(g, a) for g, a in zip(got, again) if g is not None)
    return checks


def _interpreter_checks() -> dict:
    return {name: _checks(case) for name, case in CASES.items()}


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_interpreter_worker(__file__)


def _assert_checks(result: dict, case: Case) -> None:
    result = dict(result)
    assert result.pop("repeat") is True
    assert result.pop("dtypes") == [str(case.dtype), "torch.float32", "torch.float32" if case.bias else None]
    assert ("dbias" in result) == case.bias
    for name, ratio in result.items():
        assert ratio <= 1, f"{name} error {ratio:.2f}x the tolerance"


@pytest.mark.parametrize("case", list(CASES))
def test_triton_conv_backward_matches_autograd(interpreted, case):
    _assert_checks(interpreted[case], CASES[case])


def test_fixed_order_conv_takes_the_kernel_only_on_cuda(monkeypatch):
    """On CPU tensors the torch-ops backward runs (the kernel is never called)."""
    def refuse(*args):
        raise AssertionError("the Triton kernel ran on CPU tensors")

    monkeypatch.setattr(cc, "conv_backward_triton", refuse)
    conv = cc.fixed_order_conv(cc.causal_conv1d_ref, cc._conv_backward_kernel)
    x = torch.randn(2, 4, 6, requires_grad=True)
    conv(x, torch.randn(4, 3), None, activation="silu").sum().backward()
    assert x.grad is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", list(CASES) + ["mamba-small"])
def test_triton_conv_backward_matches_autograd_on_gpu(case):
    # "mamba-small": x as small's mamba passes it (B 64, d_inner 256, L 256, a slice of xz)
    spec = CASES.get(case) or Case(64, 256, 256, dtype=torch.bfloat16, layout="slice")
    _assert_checks(_checks(spec, device="cuda"), spec)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or cc.causal_conv1d_fn is None, reason="needs causal_conv1d")
def test_triton_conv_backward_is_close_to_causal_conv1d_on_gpu():
    case = Case(8, 256, 300, dtype=torch.bfloat16)
    x, weight, bias, dout = _inputs(case, "cuda")
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    cc.causal_conv1d_fn(*leaves, activation="silu").backward(dout)
    got = conv_backward_triton(x, weight, bias, dout, True)
    for name, g, w in zip(("dx", "dweight", "dbias"), got, [t.grad for t in leaves]):
        assert g.dtype == w.dtype, name
        torch.testing.assert_close(g.float(), w.float(), rtol=2e-2, atol=2e-2 * w.abs().max().item(), msg=name)


if __name__ == "__main__":  # the interpreter worker, started by the ``interpreted`` fixture
    patch_interpreter()
    print(json.dumps(_interpreter_checks()))
