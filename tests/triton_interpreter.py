"""Triton's CPU interpreter for kernel tests: a worker subprocess and the patches it needs.

The interpreter needs TRITON_INTERPRET=1 before triton itself is imported (triton.language's own
helpers, tl.zeros and tl.sum, are jit functions decorated then), and setting it in the test
process would turn every Triton kernel imported later into an interpreted one, the GPU tests'
included. So a test module runs itself as a script with TRITON_INTERPRET=1 (its ``__main__``
calls ``patch_interpreter`` and prints its checks as one JSON line) and its tests read the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_interpreter_worker(script: str, timeout: float = 600) -> dict:
    """Run ``script`` in Triton's interpreter and return the JSON its last line prints."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    run = subprocess.run([sys.executable, script], env=env, cwd=root, capture_output=True,
                         text=True, timeout=timeout)
    if run.returncode != 0:
        pytest.fail(f"interpreter worker {Path(script).name} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def patch_interpreter() -> None:
    """Both fixes below; call in the worker only."""
    _backport_index_fix()
    _patch_bf16_dot()


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


def _patch_bf16_dot() -> None:
    """Triton 3.6's interpreter holds bf16 as its uint16 bits and tl.dot multiplies those bits
    (triton-lang/triton#11584, unsupported upstream). In the worker only, widen bf16 operands to
    the fp32 values they stand for (exact: the bits shifted into an fp32's top half) first, so
    the dot is the bf16 x bf16 -> fp32 product the GPU's tensor cores compute. (The interpreter
    rounds fp32 -> bf16 casts toward zero, the GPU to nearest: the rounded check's errors here are
    about twice the GPU's.)"""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    create_dot = interpreter.InterpreterBuilder.create_dot

    def widen(handle):
        if handle.dtype.scalar != tl.bfloat16:
            return handle
        values = (handle.data.astype(np.uint32) << 16).view(np.float32)
        return interpreter.TensorHandle(values, tl.float32)

    def patched(self, a, b, d, input_precision, max_num_imprecise_acc):
        return create_dot(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    interpreter.InterpreterBuilder.create_dot = patched
