"""Cross entropy over the vocabulary at the labelled positions, without fp32 logits.

The runner's loss is ``F.cross_entropy(logits.float(), target, ignore_index=-100)`` on the (N, V)
logits of the labelled positions. At V = 20,000 that line is a fifth of a ``small`` training step
on a GPU (docs/benchmarks.md, "Packed training"): the bf16 logits are copied to fp32, log-softmax
reads and writes them, and the backward writes a dense fp32 gradient, passes it through the
log-softmax backward and casts it back to bf16 for the head's matmul: about 38 bytes of memory
traffic per logit. ``fused_cross_entropy`` computes the same loss from the logits as they are:
its forward reads each row once (an online max and sum of exponentials, in fp32) and keeps the
row's log-sum-exp; its backward reads the row again and writes the gradient
(softmax - onehot) * grad / count in the logits' dtype: 6 bytes per bf16 logit. The values are
those of the reference up to the order of fp32 sums (the gradient is rounded to bf16 once, where
the reference rounds its fp32 gradient in the cast's backward).

Targets of -100 are ignored and the loss is the mean over the others, as ``ignore_index=-100``
with mean reduction (no valid target: nan, as torch). ``MQARBENCH_CROSS_ENTROPY`` picks the path:
``auto`` (unset: the Triton kernels on CUDA where Triton imports, else torch), ``torch`` or
``triton``; ``MQARBENCH_KERNELS=reference`` forces torch's.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, env_choice, kernel_choices, use_reference
from mqarbench.kernels.triton_support import launch_device, triton, triton_available

if triton is not None:
    import triton.language as tl

CROSS_ENTROPY_PATHS = ("auto", "torch", "triton")  # MQARBENCH_CROSS_ENTROPY's values
IGNORE = -100
BLOCK_V = 4096  # vocabulary entries a program holds at once (V = 20,000: 5 blocks per pass)


def reference_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The runner's loss as torch computes it: logits (N, V), target (N,) -> mean over valid."""
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)


if triton is not None:

    @triton.jit
    def _lse_kernel(logits, stride_row, target, lse_out, loss_out, n_cols, BLOCK: tl.constexpr):
        """One row per program: its log-sum-exp and its loss (0 where the target is ignored)."""
        row = tl.program_id(0).to(tl.int64)
        base = logits + row * stride_row
        label = tl.load(target + row)
        top = float("-inf")  # running max of the row
        total = 0.0  # running sum of exp(x - top)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(base + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
            new_top = tl.maximum(top, tl.max(x, axis=0))
            total = total * tl.exp(top - new_top) + tl.sum(tl.exp(x - new_top), axis=0)
            top = new_top
        lse = top + tl.log(total)
        valid = label != -100
        inside = (label >= 0) & (label < n_cols)  # an out-of-range label reads no memory
        picked = tl.load(base + tl.where(inside, label, 0), mask=valid & inside, other=0.0).to(tl.float32)
        tl.store(lse_out + row, lse)
        tl.store(loss_out + row, tl.where(valid, lse - picked, 0.0))

    @triton.jit
    def _grad_kernel(logits, stride_row, target, lse_in, scale_in, grad, stride_grad, n_cols,
                     BLOCK: tl.constexpr):
        """One row per program: (softmax - onehot) * scale, 0 on an ignored row, in grad's dtype;
        scale (a device scalar) is the loss's gradient over the count of valid targets."""
        row = tl.program_id(0).to(tl.int64)
        base = logits + row * stride_row
        out = grad + row * stride_grad
        label = tl.load(target + row)
        lse = tl.load(lse_in + row)
        scale = tl.where(label != -100, tl.load(scale_in), 0.0)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < n_cols
            x = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
            g = (tl.exp(x - lse) - tl.where(cols == label, 1.0, 0.0)) * scale
            tl.store(out + cols, g.to(out.dtype.element_ty), mask=inside)


def _launch_options(n_cols: int) -> tuple[int, int]:
    """(BLOCK, num_warps): a power of two of at most BLOCK_V entries, 4-8 warps."""
    block = min(BLOCK_V, triton.next_power_of_2(n_cols))
    return block, 8 if block >= 2048 else 4


class _FusedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rows, n_cols = logits.shape
        logits = logits if logits.stride(-1) == 1 else logits.contiguous()
        target = target.contiguous()
        lse = torch.empty(rows, device=logits.device, dtype=torch.float32)  # (N,)
        per_row = torch.empty(rows, device=logits.device, dtype=torch.float32)  # (N,)
        block, warps = _launch_options(n_cols)
        with launch_device(logits):
            _lse_kernel[(rows,)](logits, logits.stride(0), target, lse, per_row, n_cols,
                                 BLOCK=block, num_warps=warps)
        count = (target != IGNORE).sum().float()  # on the device: no host synchronisation
        ctx.save_for_backward(logits, target, lse, count)
        return per_row.sum() / count

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        logits, target, lse, count = ctx.saved_tensors
        rows, n_cols = logits.shape
        scale = (grad_loss.float() / count).reshape(1)  # (1,)
        grad = torch.empty_like(logits)  # (N, V) in the logits' dtype
        block, warps = _launch_options(n_cols)
        with launch_device(logits):
            _grad_kernel[(rows,)](logits, logits.stride(0), target, lse, scale, grad, grad.stride(0),
                                  n_cols, BLOCK=block, num_warps=warps)
        return grad, None


def fused_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference's loss with the Triton kernels: logits (N, V) in any float dtype, target (N,)."""
    if logits.shape[0] == 0:  # nothing to launch over; torch's answer (nan)
        return reference_cross_entropy(logits, target)
    return _FusedCrossEntropy.apply(logits, target)


def cross_entropy_impl(device: torch.device) -> tuple[Callable, KernelChoice]:
    """The loss's implementation on ``device``, as MQARBENCH_CROSS_ENTROPY says (see the module)."""
    chosen = env_choice("MQARBENCH_CROSS_ENTROPY", CROSS_ENTROPY_PATHS)
    torch_path = KernelChoice("torch.cross_entropy", True)
    if use_reference() or chosen == "torch":
        return reference_cross_entropy, torch_path
    ready, why = triton_available()
    if device.type == "cuda" and ready:
        return fused_cross_entropy, KernelChoice("triton.fused_cross_entropy", True)
    if chosen == "auto" and device.type != "cuda":
        return reference_cross_entropy, torch_path
    why = why or f"MQARBENCH_CROSS_ENTROPY=triton needs a CUDA device, not {device.type}"
    return reference_cross_entropy, KernelChoice(torch_path.path, True, why)


def label_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss: mean cross entropy of logits (N, V) against target (N,), -100 ignored."""
    return cross_entropy_impl(logits.device)[0](logits, target)


def training_kernel_choices(module: torch.nn.Module, device: torch.device) -> dict[str, KernelChoice]:
    """What a run on ``device`` takes: the model's ops and the training loss (``cross_entropy``),
    as run.json records them and ``mqarbench models show`` lists them."""
    return {**kernel_choices(module, device), "cross_entropy": cross_entropy_impl(device)[1]}
