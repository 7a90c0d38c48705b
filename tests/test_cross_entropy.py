"""The fused cross entropy (mqarbench.kernels.cross_entropy) against torch's: the loss and the
logits' gradient, with ignored targets, several vocabulary blocks and a loss gradient other than 1;
in Triton's CPU interpreter here (one worker subprocess, tests/triton_interpreter.py) and compiled
on CUDA with -m gpu. Also which path the runner takes, and that its eager loss uses it.
"""

from __future__ import annotations

import json

import pytest
import torch
from triton_interpreter import patch_interpreter, run_interpreter_worker

triton = pytest.importorskip("triton")

from mqarbench.errors import UserError  # noqa: E402 - only once triton imports
from mqarbench.kernels import cross_entropy as ce  # noqa: E402
from mqarbench.kernels import force_reference  # noqa: E402

# (rows, vocabulary, ignored share, dtype, block): V = 300 over blocks of 128 is three blocks, the
# last partial; V = 5 is one partial block; one row; every target ignored (nan, as torch)
CASES = {
    "fp32-blocks": (37, 300, 0.3, torch.float32, 128),
    "fp32-one-block": (9, 5, 0.0, torch.float32, 4096),
    "fp32-one-row": (1, 1000, 0.0, torch.float32, 256),
    "bf16-blocks": (40, 700, 0.25, torch.bfloat16, 256),
}


def _inputs(rows, vocab, ignored, dtype, device="cpu", seed=0):
    """Logits (N, V) with a wide spread (as a trained head's) and targets with -100s."""
    gen = torch.Generator().manual_seed(seed)
    logits = (4 * torch.randn(rows, vocab, generator=gen)).to(dtype)
    target = torch.randint(0, vocab, (rows,), generator=gen)
    target[torch.rand(rows, generator=gen) < ignored] = ce.IGNORE
    return logits.to(device).requires_grad_(), target.to(device)


def _ratio(got, want, tol):
    """Worst |got - want| / (tol * (max |want| + |want|)): passing at <= 1."""
    want = want.detach().float()
    bound = tol * max(1.0, want.abs().max().item()) + tol * want.abs()
    return ((got.detach().float() - want).abs() / bound).max().item()


def _checks(rows, vocab, ignored, dtype, device="cpu", grad_scale=3.5) -> dict:
    """Loss and gradient of the fused path against the reference on the same logits."""
    logits, target = _inputs(rows, vocab, ignored, dtype, device)
    twin = logits.detach().clone().requires_grad_()
    loss, want = ce.fused_cross_entropy(logits, target), ce.reference_cross_entropy(twin, target)
    (loss * grad_scale).backward()
    (want * grad_scale).backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: the gradient rounded once vs. twice
    ignored_rows = target == ce.IGNORE
    return {"loss": abs(loss.item() - want.item()) / max(1.0, abs(want.item())),
            "grad": _ratio(logits.grad, twin.grad, tol),
            "grad_dtype": str(logits.grad.dtype),
            "ignored_rows_zero": bool((logits.grad[ignored_rows] == 0).all()),
            "loss_nan": bool(loss.isnan()), "want_nan": bool(want.isnan())}


def _interpreter_checks() -> dict:
    results = {}
    for name, (rows, vocab, ignored, dtype, block) in CASES.items():
        ce.BLOCK_V = block
        torch.manual_seed(0)
        results[name] = _checks(rows, vocab, ignored, dtype)
    logits, target = _inputs(6, 50, 0.0, torch.float32)
    target[:] = ce.IGNORE
    results["all-ignored"] = {"loss_nan": bool(ce.fused_cross_entropy(logits, target).isnan())}
    return results


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_interpreter_worker(__file__)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_loss_and_gradient_match_torch(interpreted, case):
    result = interpreted[case]
    assert result["loss"] <= 1e-5, f"loss off by {result['loss']:.2e} (relative)"
    assert result["grad"] <= 1, f"gradient error {result['grad']:.2f}x the tolerance"
    assert result["grad_dtype"] == str(CASES[case][3]), "the gradient is in the logits' dtype"
    assert result["ignored_rows_zero"]
    assert not result["loss_nan"] and not result["want_nan"]


def test_every_target_ignored_gives_nan_as_torch(interpreted):
    assert interpreted["all-ignored"]["loss_nan"]


def test_path_choice(monkeypatch):
    monkeypatch.delenv("MQARBENCH_CROSS_ENTROPY", raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert ce.cross_entropy_impl(cpu)[1].path == "torch.cross_entropy"
    assert ce.cross_entropy_impl(cpu)[1].missing == ""  # auto on a CPU: torch's is the path, not a fallback
    assert ce.cross_entropy_impl(cuda)[1].path == "triton.fused_cross_entropy"
    with force_reference():
        assert ce.cross_entropy_impl(cuda)[1].path == "torch.cross_entropy"
    monkeypatch.setenv("MQARBENCH_CROSS_ENTROPY", "torch")
    assert ce.cross_entropy_impl(cuda)[0] is ce.reference_cross_entropy
    monkeypatch.setenv("MQARBENCH_CROSS_ENTROPY", "triton")
    fn, choice = ce.cross_entropy_impl(cpu)
    assert fn is ce.reference_cross_entropy and "needs a CUDA device" in choice.missing
    monkeypatch.setenv("MQARBENCH_CROSS_ENTROPY", "fused")
    with pytest.raises(UserError, match="MQARBENCH_CROSS_ENTROPY='fused': use one of auto, torch, triton"):
        ce.cross_entropy_impl(cpu)


def test_models_show_reports_the_loss_path(monkeypatch):
    from mqarbench.models.describe import available_kernels
    from mqarbench.models.registry import load_adapter

    monkeypatch.delenv("MQARBENCH_CROSS_ENTROPY", raising=False)
    adapter = load_adapter("pythia")
    assert available_kernels(adapter, "cuda")["cross_entropy"] == "triton.fused_cross_entropy"
    assert available_kernels(adapter, "cpu")["cross_entropy"] == "torch.cross_entropy"


def test_runner_losses_take_the_chosen_path(monkeypatch):
    """The eager and the graphed loss both go through label_cross_entropy."""
    from mqarbench.runner import graphs, train

    calls = []

    def spy(logits, target):
        calls.append(tuple(logits.shape))
        return ce.reference_cross_entropy(logits, target)

    monkeypatch.setattr(ce, "cross_entropy_impl", lambda device: (spy, None))
    model = torch.nn.Sequential(torch.nn.Embedding(11, 8), torch.nn.Linear(8, 11))
    ids = torch.randint(0, 11, (2, 5))
    labels = torch.full((2, 5), -100)
    labels[0, 3], labels[1, 1], labels[1, 4] = 1, 2, 3
    eager = train.label_loss(model, ids, labels)
    index = torch.tensor([3, 6, 9, 0])  # the same three positions, flattened, and one padding
    graphed = graphs.static_loss(model, ids, torch.arange(2), index, torch.tensor([1, 2, 3, -100]))
    assert calls == [(3, 11), (4, 11)]
    torch.testing.assert_close(eager, graphed)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows,vocab", [(4096, 20000), (3, 20000), (257, 1000)])
def test_fused_matches_torch_on_gpu(rows, vocab, dtype):
    result = _checks(rows, vocab, 0.2, dtype, device="cuda")
    assert result["loss"] <= 1e-5 and result["grad"] <= 1, result
    assert result["grad_dtype"] == str(dtype) and result["ignored_rows_zero"]


if __name__ == "__main__":  # the interpreter worker, started by the ``interpreted`` fixture
    patch_interpreter()
    print(json.dumps(_interpreter_checks()))
