"""Train one run (App. B.5), checkpointing every epoch and keeping the best-validation weights."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.models.heads import logits_at
from mqarbench.runner.batches import batches_per_epoch, epoch_plan, length_buckets, load_cells
from mqarbench.runner.checkpoint import (CorruptCheckpoint, load_checkpoint, remove_checkpoint,
                                         save_checkpoint)
from mqarbench.runner.evaluate import autocast, evaluate_cells
from mqarbench.runner.hparams import HParams
from mqarbench.runner.metrics import task_scores
from mqarbench.runner.plan import RunSpec

CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
# Validation query accuracy (x100) that no later epoch can beat: training stops there, since the
# best checkpoint is only replaced by a strictly better one (selection is unchanged).
PERFECT = 100.0

# (epoch, step, steps per epoch) after every optimizer step
StepCallback = Callable[[int, int, int], None]


@dataclass
class TrainState:
    """What survives an interruption (saved in every epoch checkpoint)."""

    epoch: int = -1  # last finished epoch
    best_epoch: int = -1
    best_valid: float = -1.0
    train_tokens: int = 0
    train_s: float = 0.0
    data_s: float = 0.0
    eval_s: float = 0.0
    history: list[dict] = field(default_factory=list)


def lr_lambda(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Linear warmup over the first ``warmup_fraction`` of steps, then linear decay to 0."""
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor


def label_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy on labelled positions only. input_ids, labels (B, L)."""
    mask = labels != -100  # (B, L)
    with autocast(input_ids.device):
        logits = logits_at(model, input_ids, mask)  # (N, V)
    return F.cross_entropy(logits.float(), labels[mask])


def _resume(path: Path, best: Path, model, optimizer, scheduler) -> TrainState:
    """Restore the last epoch checkpoint; a corrupt one is discarded and the run starts over."""
    try:
        ck = load_checkpoint(path)
    except CorruptCheckpoint as err:
        print(f"warning: {err}; discarding it and training this run from the start", file=sys.stderr)
        ck = None
    if ck is None:
        remove_checkpoint(path)
        remove_checkpoint(best)
        return TrainState()
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng_cpu"])
    if torch.cuda.is_available() and ck.get("rng_cuda") is not None:
        torch.cuda.set_rng_state_all(ck["rng_cuda"])
    return TrainState(**ck["state"])


def train_model(spec: RunSpec, model: torch.nn.Module, device: torch.device,
                on_step: StepCallback | None = None) -> TrainState:
    """Train ``model`` (already on ``device``) for the run's epochs, resuming if a checkpoint exists."""
    hp: HParams = spec.hparams
    t0 = time.perf_counter()
    ds = spec.train.open()
    buckets = length_buckets(load_cells(ds, "train"))
    valid_cells = load_cells(ds, "valid")
    steps = batches_per_epoch(buckets, hp.batch_size)
    sizes = [len(ids) for ids, _ in buckets]
    # the whole training split lives on the device: no host copy per step
    on_device = [(torch.from_numpy(ids).to(device), torch.from_numpy(labels).to(device)) for ids, labels in buckets]
    data_s = time.perf_counter() - t0

    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(steps * hp.epochs, hp.warmup_fraction))
    run_dir = spec.run_dir
    state = _resume(run_dir / CHECKPOINT, run_dir / BEST, model, optimizer, scheduler)
    state.data_s += data_s

    for epoch in range(state.epoch + 1, hp.epochs):
        if state.best_valid >= PERFECT:
            break
        model.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for step, (bucket, rows) in enumerate(epoch_plan(sizes, hp.batch_size, spec.seed, epoch)):
            index = torch.from_numpy(rows).to(device)
            x = on_device[bucket][0].index_select(0, index)  # (B, L)
            y = on_device[bucket][1].index_select(0, index)  # (B, L)
            loss = label_loss(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
            state.train_tokens += x.numel()
            if on_step:
                on_step(epoch, step + 1, steps)
        train_loss = float(loss_sum) / max(1, steps)
        t_eval = time.perf_counter()
        state.train_s += t_eval - t_epoch
        valid = task_scores(evaluate_cells(model, valid_cells, device, hp.eval_batch_size))["query_accuracy"]
        state.eval_s += time.perf_counter() - t_eval
        state.history.append({"epoch": epoch, "train_loss": train_loss, "valid_query_accuracy": valid})
        state.epoch = epoch
        if valid > state.best_valid:
            state.best_epoch, state.best_valid = epoch, valid
            save_checkpoint(run_dir / BEST, {"model": model.state_dict(), "epoch": epoch,
                                             "valid_query_accuracy": valid})
        save_checkpoint(run_dir / CHECKPOINT, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "state": state.__dict__})
    return state
