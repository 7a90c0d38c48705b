"""Train one run (App. B.5), checkpointing every epoch and keeping the best-validation weights.

A run's training is a ``Member``: its model, optimizer, schedule, data order and records. The
runner trains one member at a time (``train_model``) or several side by side in one process
(``mqarbench.runner.pack``); a member's arithmetic is the same either way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mqarbench.kernels.cross_entropy import label_cross_entropy
from mqarbench.models.heads import logits_at
from mqarbench.runner.batches import Cell, epoch_plan, length_buckets, load_cells
from mqarbench.runner.checkpoint import (CorruptCheckpoint, load_checkpoint, remove_checkpoint,
                                         save_checkpoint)
from mqarbench.runner.evaluate import autocast, evaluate_cells
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
    return label_cross_entropy(logits, labels[mask])


@dataclass
class TrainData:
    """A training split on the device, shared by every member trained on it."""

    buckets: list[tuple[torch.Tensor, torch.Tensor]]  # per length: input_ids, labels (N_b, L_b)
    host_buckets: list[tuple[np.ndarray, np.ndarray]]
    valid_cells: list[Cell]
    load_s: float
    static: list = field(default_factory=list)  # graph form of the buckets (runner/graphs.py), built once

    @property
    def sizes(self) -> list[int]:
        return [len(ids) for ids, _ in self.host_buckets]

    @classmethod
    def load(cls, spec: RunSpec, device: torch.device) -> "TrainData":
        t0 = time.perf_counter()
        ds = spec.train.open()
        host = length_buckets(load_cells(ds, "train"))
        valid = load_cells(ds, "valid")
        # the whole training split lives on the device: no host copy per step
        on_device = [(torch.from_numpy(ids).to(device), torch.from_numpy(labels).to(device)) for ids, labels in host]
        return cls(on_device, host, valid, time.perf_counter() - t0)


class Member:
    """One run being trained: resumable, validated and checkpointed once per epoch."""

    def __init__(self, spec: RunSpec, model: torch.nn.Module, data: TrainData, device: torch.device,
                 on_step: StepCallback | None = None, capturable: bool = False):
        hp = spec.hparams
        self.spec, self.model, self.data, self.device, self.on_step = spec, model, data, device, on_step
        self.steps = sum(-(-n // hp.batch_size) for n in data.sizes)  # batches per epoch
        # capturable: the optimizer's step counters and learning rate live on the GPU, so a CUDA
        # graph can replay the whole step (mqarbench/runner/graphs.py)
        lr = torch.tensor(hp.lr, device=device) if capturable else hp.lr
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=hp.weight_decay,
                                           capturable=capturable)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.steps * hp.epochs, hp.warmup_fraction))
        self.state = self._resume()
        self.state.data_s += data.load_s
        self.epoch, self.plan, self.cursor = -1, [], 0
        self.loss_sum = torch.zeros((), device=device)
        self.t_epoch = 0.0

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir

    @property
    def done(self) -> bool:
        return self.state.best_valid >= PERFECT or self.state.epoch + 1 >= self.spec.hparams.epochs

    def _resume(self) -> TrainState:
        """Restore the last epoch checkpoint; a corrupt one is discarded and the run starts over."""
        path, best = self.run_dir / CHECKPOINT, self.run_dir / BEST
        try:
            ck = load_checkpoint(path)
        except CorruptCheckpoint as err:
            print(f"warning: {err}; discarding it and training this run from the start", file=sys.stderr)
            ck = None
        if ck is None:
            remove_checkpoint(path)
            remove_checkpoint(best)
            return TrainState()
        self.model.load_state_dict(ck["model"])
        load_optimizer(self.optimizer, ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng_cpu"])
        if torch.cuda.is_available() and ck.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all(ck["rng_cuda"])
        return TrainState(**ck["state"])

    def begin_epoch(self) -> None:
        hp = self.spec.hparams
        self.epoch = self.state.epoch + 1
        self.plan = epoch_plan(self.data.sizes, hp.batch_size, self.spec.seed, self.epoch)
        self.cursor = 0
        self.loss_sum.zero_()
        self.model.train()
        self.t_epoch = time.perf_counter()

    @property
    def epoch_finished(self) -> bool:
        return self.cursor >= len(self.plan)

    def step(self) -> None:
        """One optimizer step on the next batch of the epoch (eagerly)."""
        bucket, rows = self.plan[self.cursor]
        ids, labels = self.data.buckets[bucket]
        index = torch.from_numpy(rows).to(self.device)
        x = ids.index_select(0, index)  # (B, L)
        y = labels.index_select(0, index)  # (B, L)
        loss = label_loss(self.model, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.hparams.grad_clip)
        self.optimizer.step()
        self.after_step(loss, len(rows) * ids.shape[1])

    def after_step(self, loss: torch.Tensor, tokens: int) -> None:
        self.scheduler.step()
        self.loss_sum += loss.detach()
        self.state.train_tokens += tokens
        self.cursor += 1
        if self.on_step:
            self.on_step(self.epoch, self.cursor, self.steps)

    def end_epoch(self, train_s: float | None = None) -> None:
        """Validate, keep the best weights, checkpoint. ``train_s``: the epoch's training time
        when it is not this member's own wall time (members trained side by side share it)."""
        t_eval = time.perf_counter()
        self.state.train_s += (t_eval - self.t_epoch) if train_s is None else train_s
        train_loss = float(self.loss_sum) / max(1, self.steps)
        hp = self.spec.hparams
        # a model with diagnostics (e.g. Global Selection's gate and Δ statistics) reports them on
        # the validation split every epoch: eager, so it works for graphed members too
        track = getattr(self.model, "track_diagnostics", None)
        if track:
            track(True)
        try:
            valid = task_scores(evaluate_cells(self.model, self.data.valid_cells, self.device,
                                               hp.eval_batch_size))["query_accuracy"]
            entry = {"epoch": self.epoch, "train_loss": train_loss, "valid_query_accuracy": valid}
            if track:
                entry["diagnostics"] = self.model.diagnostics()
        finally:
            if track:  # never leave the hooks on for training steps
                track(False)
        self.state.eval_s += time.perf_counter() - t_eval
        self.state.history.append(entry)
        self.state.epoch = self.epoch
        if valid > self.state.best_valid:
            self.state.best_epoch, self.state.best_valid = self.epoch, valid
            save_checkpoint(self.run_dir / BEST, {"model": self.model.state_dict(), "epoch": self.epoch,
                                                  "valid_query_accuracy": valid})
        save_checkpoint(self.run_dir / CHECKPOINT, {
            "model": self.model.state_dict(), "optimizer": portable_optimizer_state(self.optimizer),
            "scheduler": self.scheduler.state_dict(), "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "state": self.state.__dict__})


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state dict with plain-number learning rates and CPU step counters, so a
    checkpoint resumes the same way whether it was written by an eager or a graphed member."""
    sd = optimizer.state_dict()
    groups = [{**g, "lr": float(g["lr"]), "capturable": False} for g in sd["param_groups"]]
    state = {k: {n: (v.detach().float().cpu() if n == "step" else v) for n, v in s.items()}
             for k, s in sd["state"].items()}
    return {"state": state, "param_groups": groups}


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load ``saved`` into ``optimizer`` keeping its own settings (capturable, a tensor lr)."""
    own = [(g["capturable"], g["lr"]) for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, (capturable, lr), saved_group in zip(optimizer.param_groups, own, saved["param_groups"]):
        group["capturable"] = capturable
        if isinstance(lr, torch.Tensor):
            lr.fill_(float(saved_group["lr"]))
            group["lr"] = lr
    if any(c for c, _ in own):
        for st in optimizer.state.values():
            if "step" in st:
                st["step"] = st["step"].to(device=st["exp_avg"].device, dtype=torch.float32)


def train_model(spec: RunSpec, model: torch.nn.Module, device: torch.device,
                on_step: StepCallback | None = None) -> TrainState:
    """Train ``model`` (already on ``device``) for the run's epochs, resuming if a checkpoint exists."""
    member = Member(spec, model, TrainData.load(spec, device), device, on_step)
    while not member.done:
        member.begin_epoch()
        while not member.epoch_finished:
            member.step()
        member.end_epoch()
    return member.state
