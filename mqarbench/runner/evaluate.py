"""Evaluate a model on a split: argmax predictions in large no-grad batches, scored per cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mqarbench.io import atomic_path
from mqarbench.models.heads import logits_at
from mqarbench.runner.batches import Cell
from mqarbench.runner.metrics import CellScore, score_cell

ATTENTION_MAX_LEN = 256


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def predict(model: torch.nn.Module, input_ids: np.ndarray, scored: np.ndarray,
            device: torch.device) -> np.ndarray:
    """Argmax predictions (B, L) at the ``scored`` positions (B, L); -1 elsewhere."""
    x = torch.from_numpy(input_ids).to(device)  # (B, L)
    mask = torch.from_numpy(scored).to(device)  # (B, L)
    with autocast(device):
        logits = logits_at(model, x, mask)  # (N, V)
    pred = torch.full(x.shape, -1, dtype=torch.long, device=device)
    pred[mask] = logits.argmax(-1)
    return pred.cpu().numpy()  # (B, L)


def evaluate_cells(model: torch.nn.Module, cells: list[Cell], device: torch.device,
                   batch_size: int) -> list[CellScore]:
    """One ``CellScore`` per cell, in the given order."""
    was_training = model.training
    model.eval()
    scores = []
    try:
        for cell in cells:
            score = CellScore(cell.seq_len, cell.num_kv_pairs)
            for i in range(0, len(cell), batch_size):
                part = slice(i, i + batch_size)
                pred = predict(model, cell.input_ids[part], cell.query_index[part] >= 0, device)
                score.add(score_cell(pred, cell.labels[part], cell.query_index[part], cell.seq_len,
                                     cell.num_kv_pairs,
                                     None if cell.candidates is None else cell.candidates[part]))
            scores.append(score)
    finally:
        model.train(was_training)
    return scores


def attention_example(cells: list[Cell]) -> Cell | None:
    """The longest cell with L <= 256, whose first example the maps are drawn on."""
    fitting = [c for c in cells if c.seq_len <= ATTENTION_MAX_LEN and len(c)]
    return max(fitting, key=lambda c: (c.seq_len, c.num_kv_pairs)) if fitting else None


def save_attention(model: torch.nn.Module, cells: list[Cell], device: torch.device, path: Path) -> bool:
    """Write the hidden-attention maps of the fixed example to ``path`` (.npz); False if unsupported."""
    from mqarbench.analysis.hidden_attention import hidden_attention, supports_hidden_attention

    cell = attention_example(cells)
    if cell is None or not supports_hidden_attention(model):
        return False
    was_training = model.training
    model.eval()
    try:
        ids = torch.from_numpy(cell.input_ids[:1]).to(device)  # (1, L)
        maps = hidden_attention(model, ids)  # (n_layers, L, L)
    finally:
        model.train(was_training)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, maps=maps.astype(np.float16), input_ids=cell.input_ids[0].astype(np.int32),
                                labels=cell.labels[0].astype(np.int32))
    return True
