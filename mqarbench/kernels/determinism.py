"""Deterministic training on CUDA: the same seed gives the same run, bit for bit. The default.

Two ops of the Mamba family sum gradients with atomic adds, in an order that changes from one
launch to the next: mamba_ssm's selective-scan backward and causal_conv1d's weight and bias
gradients. At `small` that rounding alone moves a run's score by tens of points
(docs/benchmarks.md, "Deterministic training"). Deterministic training takes our Triton scan and
a short-conv backward that sums in a fixed order, and turns on torch's deterministic algorithms
for every other op. In packs of runs it costs nothing measurable; a lone run at `paper` about 12-18%
(docs/benchmarks.md). ``MQARBENCH_DETERMINISTIC=0`` (``--no-deterministic``) takes the
libraries' own kernels; so do ``MQARBENCH_SELECTIVE_SCAN=mamba_ssm`` and
``MQARBENCH_GLOBAL_MIXER=fused``, which ask for mamba_ssm's scan by name, unless
``MQARBENCH_DETERMINISTIC=1`` says otherwise (then the scan is refused, the fused mixer left out).
"""

from __future__ import annotations

import os

import torch

from mqarbench.errors import UserError

VARIABLE = "MQARBENCH_DETERMINISTIC"


def deterministic_setting() -> str:
    """MQARBENCH_DETERMINISTIC as set: "1", "0", or "" when unset (a bad value raises UserError)."""
    value = os.environ.get(VARIABLE, "")
    if value not in ("", "0", "1"):
        raise UserError(f"{VARIABLE}={value!r}: use 1 (deterministic kernels, the default) or 0 "
                        "(the libraries' own kernels)")
    return value


def deterministic_chosen() -> bool:
    """Whether runs take deterministic kernels: as MQARBENCH_DETERMINISTIC says; unset, yes,
    unless a variable asks for a path that holds mamba_ssm's scan by name
    (MQARBENCH_SELECTIVE_SCAN=mamba_ssm, MQARBENCH_GLOBAL_MIXER=fused)."""
    value = deterministic_setting()
    if value == "":
        return (os.environ.get("MQARBENCH_SELECTIVE_SCAN") != "mamba_ssm"
                and os.environ.get("MQARBENCH_GLOBAL_MIXER") != "fused")
    return value == "1"


def choose_deterministic(on: bool = True) -> None:
    """Settle the choice for this process and every process it starts (they read the environment)."""
    os.environ[VARIABLE] = "1" if on else "0"
    if on:  # cuBLAS reads its workspace setting when its handle is created: before the first matmul
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # autotuned Triton kernels (mamba2's SSD, flash-linear-attention's) sum in the order of the
        # tiles they pick, by timing: keep the first pick in TRITON_CACHE_DIR for later processes
        # (read when the kernels are defined, so before the models are imported). Not enough for
        # mamba2, whose reruns still differed (docs/benchmarks.md, "Deterministic by default")
        os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")


def make_deterministic(device: torch.device) -> None:
    """If deterministic kernels are chosen and ``device`` is a GPU, have torch take deterministic
    algorithms (or refuse an op that has none, naming it) for the rest of the process. A CPU's
    ops are deterministic already."""
    if device.type != "cuda" or not deterministic_chosen():
        return
    choose_deterministic()
    torch.use_deterministic_algorithms(True)
    # every kernel here writes all it allocates; filling each torch.empty with NaN would only add
    # a kernel per allocation
    torch.utils.deterministic.fill_uninitialized_memory = False


def refusal(err: BaseException) -> UserError | None:
    """torch's refusal of an op without a deterministic CUDA implementation, as a one-line error
    with the fix (a contributor's model may hold such an op); None for any other error."""
    text = str(err)
    if "does not have a deterministic implementation" not in text:
        return None
    op = text.split(" does not have", 1)[0].strip()
    return UserError(f"{op} has no deterministic CUDA implementation, and deterministic training is on (the "
                     "default): train this model with --no-deterministic (or MQARBENCH_DETERMINISTIC=0)")
