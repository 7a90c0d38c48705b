"""The selected weights a run reports and a submission carries: safetensors, parameters in bf16.

The runner evaluates exactly these weights (parameters rounded to bf16 before the test tasks), so
`mqarbench leaderboard verify` can re-evaluate a submission's file and expect the same numbers.
Buffers keep their dtype: they are constants the model computes, not trained numbers.
"""

from __future__ import annotations

import json
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


def _key(t: torch.Tensor) -> tuple:
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()))


def _tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to store, aliases): a tied tensor (an output head sharing the embedding) is stored
    once and named again in the aliases; parameters, tied ones included, as bf16."""
    import torch

    params = {_key(p) for p in model.parameters()}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        key = _key(t)
        if key in first:
            aliases[name] = first[key]
            continue
        first[key] = name
        t = t.detach().cpu()
        tensors[name] = (t.to(torch.bfloat16) if key in params and t.is_floating_point() else t).contiguous().clone()
    return tensors, aliases


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write ``model``'s state (parameters as bf16) to ``path`` with a ``.sha256`` sidecar."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors, aliases = _tensors(model)
    with atomic_path(path) as tmp:
        # one metadata entry: safetensors writes its entries in a random order, so with two the
        # same weights would give a different file (and .sha256) on every save
        save_file(tensors, str(tmp), metadata={"mqarbench.aliases": json.dumps(aliases, sort_keys=True)})
    write_text_atomic(path.with_name(path.name + ".sha256"), sha256_file(path) + "\n")


def export_selected(model: torch.nn.Module, run_dir: Path) -> None:
    """Round ``model`` (the selected checkpoint) to bf16 and write it as the run's weights."""
    round_to_bf16(model)
    save_weights(model, Path(run_dir) / WEIGHTS_FILE)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a weights file into ``model`` (each tensor cast to the model's dtype); ValueError if it does not fit."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(LFS_POINTER)) == LFS_POINTER:
            raise ValueError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull`")
    try:
        with safe_open(str(path), framework="pt") as f:
            aliases = json.loads((f.metadata() or {}).get("mqarbench.aliases", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors.update({alias: tensors[name] for alias, name in aliases.items()})
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None
    own = model.state_dict()
    if set(tensors) != set(own):
        extra, missing = sorted(set(tensors) - set(own)), sorted(set(own) - set(tensors))
        raise ValueError(f"{path}: tensors do not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, t in tensors.items():
        if t.shape != own[name].shape:
            raise ValueError(f"{path}: tensor {name} has shape {tuple(t.shape)}, the model {tuple(own[name].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
