"""The Triton add + RMSNorm (mqarbench.kernels.add_rms_norm_triton) against add_rms_norm_ref:
outputs and every gradient, with and without a residual input, with and without a gradient on
the residual output, rows and channels that fill no tile exactly; in Triton's CPU interpreter here
(tests/triton_interpreter.py) and compiled on CUDA with -m gpu, beside mamba_ssm's kernel.
"""

from __future__ import annotations

import json

import pytest
import torch
from triton_interpreter import patch_interpreter, run_interpreter_worker

triton = pytest.importorskip("triton")

from mqarbench.errors import UserError  # noqa: E402 - only once triton imports
from mqarbench.kernels import add_rms_norm as arn  # noqa: E402
from mqarbench.kernels import force_reference  # noqa: E402
from mqarbench.kernels.add_rms_norm_triton import add_rms_norm_triton  # noqa: E402

# (batch, length, channels, hidden dtype, residual input, residual output used): 3 x 7 = 21 rows
# over tiles of 32 (the last partial), 96 channels in a block of 128; 1 row; bf16 hidden
CASES = {
    "fp32-res-both": (3, 7, 96, torch.float32, True, True),
    "fp32-nores": (3, 7, 96, torch.float32, False, True),
    "fp32-res-normed-only": (2, 5, 40, torch.float32, True, False),
    "fp32-one-row": (1, 1, 128, torch.float32, True, True),
    "bf16-res-both": (4, 9, 64, torch.bfloat16, True, True),
}


def _ratio(got, want, tol):
    want = want.detach().float()
    bound = tol * max(1.0, want.abs().max().item()) + tol * want.abs()
    return ((got.detach().float() - want).abs() / bound).max().item()


def _checks(batch, length, dim, dtype, has_res, use_res_out, fn=add_rms_norm_triton, device="cpu") -> dict:
    """Error ratios of fn's outputs and gradients against add_rms_norm_ref on the same inputs."""
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(batch, length, dim, generator=gen).to(dtype).to(device)
    residual = torch.randn(batch, length, dim, generator=gen).to(device) if has_res else None
    weight = (torch.rand(dim, generator=gen) + 0.5).to(device)
    d_normed = torch.randn(batch, length, dim, generator=gen).to(device)
    d_res = torch.randn(batch, length, dim, generator=gen).to(device)
    results = []
    for impl in (fn, arn.add_rms_norm_ref):
        leaves = [hidden.clone().requires_grad_(), weight.clone().requires_grad_()]
        res = residual.clone().requires_grad_() if has_res else None
        normed, new_res = impl(leaves[0], res, leaves[1], 1e-5)
        loss = (normed.float() * d_normed).sum() + ((new_res * d_res).sum() if use_res_out else 0)
        loss.backward()
        results.append({"normed": normed, "res_out": new_res, "dhidden": leaves[0].grad,
                        "dweight": leaves[1].grad, "dres": res.grad if has_res else None})
    got, want = results
    # bf16: normed is rounded to bf16 (as mamba_ssm's), so is its incoming gradient, and dhidden
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    checks = {name: _ratio(got[name], want[name], 1e-5 if name == "res_out" else tol)
              for name in ("normed", "res_out", "dhidden", "dweight") + (("dres",) if has_res else ())}
    checks["dtypes"] = [str(got[n].dtype) for n in ("normed", "res_out", "dhidden", "dweight")]
    return checks


def _interpreter_checks() -> dict:
    return {name: _checks(*case) for name, case in CASES.items()}


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_interpreter_worker(__file__)


@pytest.mark.parametrize("case", list(CASES))
def test_triton_add_rms_norm_matches_reference(interpreted, case):
    result = dict(interpreted[case])
    dtype = str(CASES[case][3])
    assert result.pop("dtypes") == [dtype, "torch.float32", dtype, "torch.float32"]
    assert ("dres" in result) == CASES[case][4]
    for name, ratio in result.items():
        assert ratio <= 1, f"{name} error {ratio:.2f}x the tolerance"


def test_path_choice(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("MQARBENCH_RMS_NORM", raising=False)
    assert arn.add_norm_impl(cuda) == (add_rms_norm_triton, arn.KernelChoice("triton.add_rms_norm_triton", True))
    assert arn.add_norm_impl(cpu)[1] == arn.KernelChoice("reference.add_rms_norm_ref", False)
    with force_reference():
        assert arn.add_norm_impl(cuda)[1].path == "reference.add_rms_norm_ref"
    monkeypatch.setenv("MQARBENCH_RMS_NORM", "mamba_ssm")
    path = arn.add_norm_impl(cuda)[1]
    if arn.rms_norm_fn is None:  # no mamba_ssm here (CI): the reference, saying why
        assert path.path == "reference.add_rms_norm_ref" and "mamba_ssm not importable" in path.missing
    else:
        assert path.path == "mamba_ssm.rms_norm_fn"
    monkeypatch.setenv("MQARBENCH_RMS_NORM", "apex")
    with pytest.raises(UserError, match="MQARBENCH_RMS_NORM='apex': use one of auto, triton, mamba_ssm"):
        arn.add_norm_impl(cuda)


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["fp32-res-both", "fp32-nores", "bf16-res-both"])
@pytest.mark.parametrize("dim", [128, 768])
def test_triton_add_rms_norm_matches_reference_on_gpu(case, dim):
    _, _, _, dtype, has_res, use_res_out = CASES[case]
    result = _checks(64, 256, dim, dtype, has_res, use_res_out, device="cuda")
    result.pop("dtypes")
    for name, ratio in result.items():
        assert ratio <= 1, f"{name} error {ratio:.2f}x the tolerance"


if __name__ == "__main__":  # the interpreter worker, started by the ``interpreted`` fixture
    patch_interpreter()
    print(json.dumps(_interpreter_checks()))
