"""The selected weights a run reports and a submission carries: safetensors, parameters in bf16.

The runner evaluates exactly these weights (parameters rounded to bf16 before the test tasks), so
`mqarbench leaderboard verify` can re-evaluate a submission's file and expect the same numbers.
Buffers keep their dtype: they are constants the model computes, not trained numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mqarbench.io import atomic_path, sha256_file, write_text_atomic

WEIGHTS_FILE = "weights.safetensors"
LFS_POINTER = b"version https://git-lfs"

if TYPE_CHECKING:  # torch is imported where weights are handled: the leaderboard needs only the names
    import torch


def round_to_bf16(model: torch.nn.Module) -> None:
    """Round every floating parameter to bf16 in place (kept in its own dtype)."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.copy_(p.to(torch.bfloat16).to(p.dtype))


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    import torch

    params = {name for name, _ in model.named_parameters()}
    out = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        out[name] = t.to(torch.bfloat16) if name in params and t.is_floating_point() else t
    return {k: v.contiguous() for k, v in out.items()}


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write ``model``'s state (parameters as bf16) to ``path`` with a ``.sha256`` sidecar."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = _tensors(model)
    # tied weights share storage; safetensors refuses shared tensors, so each gets its own copy
    tensors = {k: v.clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "mqarbench": "selected weights"})
    write_text_atomic(path.with_name(path.name + ".sha256"), sha256_file(path) + "\n")


def export_selected(model: torch.nn.Module, run_dir: Path) -> None:
    """Round ``model`` (the selected checkpoint) to bf16 and write it as the run's weights."""
    round_to_bf16(model)
    save_weights(model, Path(run_dir) / WEIGHTS_FILE)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a weights file into ``model`` (each tensor cast to the model's dtype); ValueError if it does not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(LFS_POINTER)) == LFS_POINTER:
            raise ValueError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull`")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    own = model.state_dict()
    if set(tensors) != set(own):
        extra, missing = sorted(set(tensors) - set(own)), sorted(set(own) - set(tensors))
        raise ValueError(f"{path}: tensors do not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, t in tensors.items():
        if t.shape != own[name].shape:
            raise ValueError(f"{path}: tensor {name} has shape {tuple(t.shape)}, the model {tuple(own[name].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
