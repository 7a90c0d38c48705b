"""The Triton selective scan (mqarbench.kernels.selective_scan_triton) against selective_scan_ref
in fp64: the output and every gradient (u, delta, A, B, C, D, z, delta_bias) with their dtypes,
over lengths of several chunks that fill no chunk exactly, channel counts that fill no block,
N a power of two or not, each optional input present and absent, fp32 and bf16 inputs; bit-equal
gradients from two backward calls; the shapes accepted. In Triton's CPU interpreter here
(tests/triton_interpreter.py) and compiled on CUDA with -m gpu, beside mamba_ssm's kernel.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from triton_interpreter import patch_interpreter, run_interpreter_worker

triton = pytest.importorskip("triton")

from mqarbench.kernels import selective_scan as ss  # noqa: E402 - only once triton imports
from mqarbench.kernels.selective_scan_triton import (  # noqa: E402
    Tiles, _blocks_per_program, selective_scan_triton, tiles_for)

NAMES = ("out", "u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@dataclass(frozen=True)
class Case:
    batch: int
    dim: int
    n_state: int
    length: int
    dtype: torch.dtype = torch.float32  # of u, delta, z
    bc_dtype: torch.dtype = torch.float32  # of B, C
    z: bool = True
    skip: bool = True  # D given
    bias: bool = True
    softplus: bool = True
    bc_4d: bool = False  # B, C given as (batch, 1, N, L)
    tiles: Tiles | None = None


def _sized(n_state: int, chunks: int = 3, **kw) -> Case:
    """A case whose L spans ``chunks`` full chunks and a partial one, and whose channel count
    fills neither the forward's nor the backward's channel blocks, under the default tiles."""
    tiles = kw.get("tiles") or tiles_for(n_state)
    dim = max(tiles.fwd_block_d, tiles.bwd_block_d) + 3
    return Case(kw.pop("batch", 2), dim, n_state, chunks * tiles.block_t + 5, **kw)


CASES = {
    "fp32-all": _sized(16),
    "fp32-n5-bare": _sized(5, z=False, skip=False, bias=False, softplus=False),
    "fp32-bias-D-no-softplus": _sized(16, z=False, softplus=False),
    "fp32-n32-z-no-bias": _sized(32, skip=False, bias=False),
    "fp32-bc-4d": _sized(8, bc_4d=True, batch=3),
    "fp32-small-tiles": Case(2, 11, 6, 19, tiles=Tiles(4, 3, 4, 1, 2, 1)),  # spans of 3 chunks, then 2
    "bf16-all": _sized(16, dtype=torch.bfloat16),
    "bf16-bc-bf16": _sized(16, dtype=torch.bfloat16, bc_dtype=torch.bfloat16, bias=False),
}
DETERMINISM_CASE = "fp32-all"
# one step, channel and state; a sequence shorter than a chunk (some gradients are zero there)
EDGE_CASES = {"tiny": Case(1, 1, 1, 1), "under-a-chunk": Case(2, 3, 3, 5)}


def _inputs(case: Case, device: str = "cpu", seed: int = 1) -> dict:
    """Inputs at Mamba's scales: delta' = softplus(dt + bias) with bias the inverse softplus of a
    step in [1e-3, 1e-1] (Mamba's dt init), A = -(1..N) (S4D-real), so every decay is in (0, 1).
    Without softplus, delta is such a step itself. dout is rounded to the output's dtype."""
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    b, d, n, length = case.batch, case.dim, case.n_state, case.length
    steps = torch.exp(torch.empty(d).uniform_(-6.9, -2.3, generator=gen))  # (D,) in [1e-3, 1e-1]
    inverse = torch.log(torch.expm1(steps))  # (D,) softplus(inverse) = steps
    if case.softplus:  # without delta_bias, the bias is folded into delta
        delta = 0.5 * randn(b, d, length) + (0.0 if case.bias else inverse[:, None])
    else:
        delta = F.softplus(randn(b, d, length) - 3.0)
    bc_shape = (b, 1, n, length) if case.bc_4d else (b, n, length)
    x = {"u": randn(b, d, length).to(case.dtype), "delta": delta.to(case.dtype),
         "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
         "B": randn(*bc_shape).to(case.bc_dtype), "C": randn(*bc_shape).to(case.bc_dtype),
         "D": 1.0 + 0.1 * randn(d) if case.skip else None,
         "z": randn(b, d, length).to(case.dtype) if case.z else None,
         "delta_bias": (inverse if case.softplus else 0.01 * torch.rand(d, generator=gen)) if case.bias else None,
         "dout": randn(b, d, length).to(case.dtype)}
    return {k: None if v is None else v.to(device) for k, v in x.items()}


def _run(fn, x: dict, softplus: bool, dtype: torch.dtype | None = None, **kw) -> dict:
    """fn's output and every input's gradient under the loss sum(out * dout); inputs cast to
    ``dtype`` first (the fp64 reference) or taken as they are."""
    leaves = {k: None if x[k] is None else (x[k] if dtype is None else x[k].to(dtype)).clone().requires_grad_()
              for k in NAMES[1:]}
    out = fn(*(leaves[k] for k in ("u", "delta", "A", "B", "C", "D", "z")),
             delta_bias=leaves["delta_bias"], delta_softplus=softplus, **kw)
    (out.double() * x["dout"].double()).sum().backward()
    return {"out": out.detach(), **{k: None if v is None else v.grad for k, v in leaves.items()}}


def _compare(got: dict, want: dict, loose: float = 1.0) -> dict:
    """Per name: max |got - want| / (tol max |want|), tol 1e-4 for fp32 results and 1e-2 for
    bf16 (rounded once at the store); None where a gradient is missing; dtypes and shapes."""
    checks = {}
    for name in NAMES:
        if want[name] is None:
            continue
        if got[name] is None:
            checks[name] = None
            continue
        tol = loose * (1e-2 if got[name].dtype == torch.bfloat16 else 1e-4)
        scale = want[name].double().abs().max().item()
        err = (got[name].double() - want[name].double()).abs().max().item()
        checks[name] = {"ratio": err / (tol * scale) if scale > 0 else float(err > 0) * 1e9,
                        "scale": scale, "dtype": str(got[name].dtype), "shape": list(got[name].shape)}
    return checks


def _reference(u, delta, A, B, C, D=None, z=None, **kw):
    """selective_scan_ref, which takes B and C as (batch, N, L) only."""
    squeeze = lambda t: t.squeeze(1) if t.dim() == 4 else t  # noqa: E731
    return ss.selective_scan_ref(u, delta, A, squeeze(B), squeeze(C), D, z, **kw)


def _checks(case: Case, device: str = "cpu") -> dict:
    x = _inputs(case, device)
    ours = _run(selective_scan_triton, x, case.softplus, tiles=case.tiles)
    return _compare(ours, _run(_reference, x, case.softplus, torch.float64))


def _deterministic(case: Case, device: str = "cpu") -> bool:
    x = _inputs(case, device)
    first, second = (_run(selective_scan_triton, x, case.softplus, tiles=case.tiles) for _ in range(2))
    return all(torch.equal(first[k], second[k]) for k in NAMES if first[k] is not None)


def _patch_vector_combines() -> None:
    """Triton 3.6's interpreter runs a scan or reduction with a custom combine (the scan's, and
    tl.flip's xor) one element at a time in Python (minutes for these tiles). In the worker only,
    combine whole slices one step along the axis at a time instead: the same combines in the same
    order, vectorized across the other axes."""
    import numpy as np
    from triton.runtime import interpreter

    def combine(self, input, acc, i):
        """combine_fn(acc, input[..., i]) on whole slices; input's arrays have the axis first."""
        ret = self.combine_fn.fn(*(self.to_tensor(a, arg.dtype) for a, arg in zip(acc, self.args)),
                                 *(self.to_tensor(d[i], arg.dtype) for d, arg in zip(input, self.args)))
        return [r.handle.data for r in (ret if isinstance(ret, tuple) else (ret,))]

    def generic_scan(self, input):
        self.args = input
        data = [np.moveaxis(arg.handle.data, self.axis, 0) for arg in input]  # scan axis first
        out = [np.empty_like(d) for d in data]
        for o, d in zip(out, data):
            o[0] = d[0]
        for i in range(1, data[0].shape[0]):
            for o, r in zip(out, combine(self, data, [o[i - 1] for o in out], i)):
                o[i] = r
        return [self.to_tensor(np.moveaxis(o, 0, self.axis), arg.dtype) for o, arg in zip(out, input)]

    def generic_reduce(self, input):
        input, axis = self.unravel(input, self.axis)
        self.args = input
        data = [np.moveaxis(arg.handle.data, axis, 0) for arg in input]  # reduced axis first
        acc = [d[0] for d in data]
        for i in range(1, data[0].shape[0]):
            acc = combine(self, data, acc, i)
        ret = []
        for a, d, arg in zip(acc, data, input):
            a = np.asarray(a, dtype=d.dtype).reshape(d.shape[1:])
            if self.keep_dims:
                a = np.expand_dims(a, axis) if self.axis is not None else a.reshape((1,) * d.ndim)
            elif self.axis is None:
                a = a.item()
            ret.append(self.to_tensor(a, arg.dtype))
        return ret

    interpreter.ScanOps.generic_scan = generic_scan
    interpreter.ReduceOps.generic_reduce = generic_reduce


def _no_grad_same(case: Case) -> bool:
    """The output under no_grad (no states saved) is the output with gradients."""
    x = _inputs(case)
    args = [x[k] for k in ("u", "delta", "A", "B", "C", "D", "z")]
    with torch.no_grad():
        bare = selective_scan_triton(*args, delta_bias=x["delta_bias"], delta_softplus=case.softplus)
    return torch.equal(bare, _run(selective_scan_triton, x, case.softplus)["out"])


def _interpreter_checks() -> dict:
    results = {name: _checks(case) for name, case in {**CASES, **EDGE_CASES}.items()}
    results["deterministic"] = _deterministic(CASES[DETERMINISM_CASE])
    results["no_grad_same"] = _no_grad_same(CASES[DETERMINISM_CASE])
    return results


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_interpreter_worker(__file__)


def _assert_close(checks: dict, case: Case, x: dict) -> None:
    """Every expected gradient present, in its input's dtype and shape, and within tolerance."""
    expected = {"out", "u", "delta", "A", "B", "C"} | {k for k in ("D", "z", "delta_bias") if x[k] is not None}
    assert set(checks) == expected
    for name, check in checks.items():
        assert check is not None, f"no gradient for {name}"
        like = x["u"] if name == "out" else x[name]
        assert (check["dtype"], check["shape"]) == (str(like.dtype), list(like.shape)), name
        assert check["scale"] > 0, f"{name} is zero in the reference: the check would see nothing"
        assert check["ratio"] <= 1, f"{name} error {check['ratio']:.2f}x the tolerance"


@pytest.mark.parametrize("case", list(CASES))
def test_triton_scan_matches_reference(interpreted, case):
    _assert_close(interpreted[case], CASES[case], _inputs(CASES[case]))


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_triton_scan_edge_shapes(interpreted, case):
    assert all(check["ratio"] <= 1 for check in interpreted[case].values()), interpreted[case]


def test_triton_scan_backward_is_deterministic(interpreted):
    assert interpreted["deterministic"] is True


def test_triton_scan_under_no_grad(interpreted):
    assert interpreted["no_grad_same"] is True


def test_cases_cover_chunking():
    """The cases span >= 3 chunks with a partial last one, and channel blocks left partial; some
    save a state every chunk and some every few chunks, with a partial last span; some programs
    walk one channel block and some several, with a partial last group."""
    spans, groups = set(), set()
    for name, case in CASES.items():
        tiles = case.tiles or tiles_for(case.n_state)
        assert case.length > 3 * tiles.block_t and case.length % tiles.block_t, name
        assert case.dim % tiles.fwd_block_d and case.dim % tiles.bwd_block_d, name
        chunks = -(-case.length // tiles.block_t)
        spans.add("every" if tiles.state_every == 1 else "partial" if chunks % tiles.state_every else "whole")
        for block_d, warps in ((tiles.fwd_block_d, tiles.fwd_warps), (tiles.bwd_block_d, tiles.bwd_warps)):
            blocks = -(-case.dim // block_d)
            per = _blocks_per_program(case.batch, blocks, warps, torch.device("cpu"))
            groups.add("one" if per == 1 else "partial" if blocks % per else "whole")
    assert {c.n_state for c in CASES.values()} >= {5, 16}
    assert {"every", "partial"} <= spans and {"one", "partial", "whole"} <= groups


def test_compare_sees_a_dropped_or_wrong_gradient():
    """The comparison fails a missing gradient, a zeroed one and a slightly wrong one."""
    want = {name: None for name in NAMES} | {"out": torch.ones(3), "A": torch.full((2, 2), -0.5)}
    assert _compare({**want, "A": None}, want)["A"] is None
    assert _compare({**want, "A": torch.zeros(2, 2)}, want)["A"]["ratio"] > 1
    assert _compare({**want, "A": want["A"] * (1 + 2e-4)}, want)["A"]["ratio"] > 1
    assert _compare(want, want)["A"]["ratio"] == 0


@pytest.mark.parametrize("name,shape", [("B", (2, 16, 9)), ("B", (2, 2, 16, 8)), ("C", (2, 8)),
                                        ("delta", (2, 4, 9)), ("D", (5,)), ("A", (4, 16, 1))])
def test_bad_shapes_raise(name, shape):
    x = {"u": torch.zeros(2, 4, 8), "delta": torch.zeros(2, 4, 8), "A": -torch.ones(4, 16),
         "B": torch.zeros(2, 16, 8), "C": torch.zeros(2, 1, 16, 8), "D": torch.ones(4)}
    x[name] = torch.zeros(shape)
    with pytest.raises(ValueError, match=re.escape(f"{name} has shape {tuple(shape)}; accepted: ")):
        selective_scan_triton(**x)


# the GPU cases: Mamba's own call at small (bf16 u, delta, z), wider N, a long sequence, bare;
# against the fp64 reference with the default tiles, and with other tiles (several warps, a
# saved state every few chunks) on a shape that fills no block
GPU_CASES = {
    "small-bf16": Case(64, 256, 16, 256, dtype=torch.bfloat16),
    "n32-fp32": Case(16, 512, 32, 128),
    "n64-bf16-long": Case(4, 512, 64, 1024, dtype=torch.bfloat16, bc_dtype=torch.bfloat16),
    "n5-bare": Case(3, 100, 5, 300, z=False, skip=False, bias=False, softplus=False),
    "n16-tiles-t16-warps": Case(5, 100, 16, 300, tiles=Tiles(16, 1, 16, 4, 16, 8)),
    "n16-tiles-every-3": Case(5, 100, 16, 300, dtype=torch.bfloat16, tiles=Tiles(8, 3, 8, 2, 8, 2)),
    "n32-tiles-t8-every-2": Case(5, 100, 32, 300, tiles=Tiles(8, 2, 16, 4, 8, 2)),
}
# against mamba_ssm's kernel: small's shapes (N 16, 32, 64) and paper's, as Mamba calls it
MAMBA_CASES = {
    "small-n16": Case(64, 256, 16, 256, dtype=torch.bfloat16, bc_dtype=torch.bfloat16),
    "small-n32-fp32": Case(64, 256, 32, 128),
    "small-n64": Case(64, 256, 64, 256, dtype=torch.bfloat16, bc_dtype=torch.bfloat16),
    "paper-n16": Case(64, 1536, 16, 512, dtype=torch.bfloat16, bc_dtype=torch.bfloat16),
}


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(GPU_CASES))
def test_triton_scan_matches_reference_on_gpu(case):
    x = _inputs(GPU_CASES[case], "cuda")
    _assert_close(_checks(GPU_CASES[case], "cuda"), GPU_CASES[case], x)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(MAMBA_CASES))
def test_triton_scan_matches_mamba_ssm_on_gpu(case):
    """The same outputs and gradients as mamba_ssm's selective_scan_fn, within twice the
    tolerance against the reference (both are rounded to bf16 where the inputs are)."""
    if ss.selective_scan_fn is None:
        pytest.skip("mamba_ssm not importable")
    x = _inputs(MAMBA_CASES[case], "cuda")
    ours = _run(selective_scan_triton, x, True)
    _assert_close(_compare(ours, _run(ss.selective_scan_fn, x, True), loose=2.0), MAMBA_CASES[case], x)


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["small-bf16", "n16-tiles-every-3"])
def test_triton_scan_is_deterministic_on_gpu(case):
    assert _deterministic(GPU_CASES[case], "cuda")


if __name__ == "__main__":  # the interpreter worker, started by the ``interpreted`` fixture
    patch_interpreter()
    _patch_vector_combines()
    print(json.dumps(_interpreter_checks()))


@pytest.mark.parametrize("flags,named", [(["--shapes", "64x256x16"], "--shapes '64x256x16'"),
                                         (["--tiles", "8,1,16,1,8"], "--tiles '8,1,16,1,8'"),
                                         (["--shapes", "64x0x16x256"], "--shapes '64x0x16x256'")])
def test_bench_scan_reports_a_malformed_flag_in_one_line(flags, named):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scan.py"
    run = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and named in run.stderr
