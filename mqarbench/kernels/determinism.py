"""Deterministic training on CUDA: the same seed gives the same run, bit for bit.

Two ops of the Mamba family sum gradients with atomic adds, in an order that changes from one
launch to the next: mamba_ssm's selective-scan backward and causal_conv1d's weight and bias
gradients. At `small` that rounding alone moves a run's score by tens of points
(docs/benchmarks.md, "Deterministic training"). ``MQARBENCH_DETERMINISTIC=1`` (or ``mqarbench run
--deterministic``) takes our Triton scan and a short-conv backward that sums in a fixed order,
and turns on torch's deterministic algorithms for every other op.
"""

from __future__ import annotations

import os

import torch

from mqarbench.errors import UserError

VARIABLE = "MQARBENCH_DETERMINISTIC"


def deterministic_chosen() -> bool:
    """Whether MQARBENCH_DETERMINISTIC asks for deterministic kernels (a bad value raises UserError)."""
    value = os.environ.get(VARIABLE, "")
    if value not in ("", "0", "1"):
        raise UserError(f"{VARIABLE}={value!r}: use 1 (deterministic kernels) or 0 (or leave it unset: 0)")
    return value == "1"


def choose_deterministic() -> None:
    """Ask for deterministic kernels in this process and every process it starts."""
    os.environ[VARIABLE] = "1"
    # cuBLAS reads its workspace setting when its handle is created: before the first matmul
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def make_deterministic() -> None:
    """If deterministic kernels are chosen, have torch take deterministic algorithms (or refuse an
    op that has none, naming it) for the rest of the process."""
    if not deterministic_chosen():
        return
    choose_deterministic()
    torch.use_deterministic_algorithms(True)
    # every kernel here writes all it allocates; filling each torch.empty with NaN would only add
    # a kernel per allocation
    torch.utils.deterministic.fill_uninitialized_memory = False
