"""A member whose whole training step is a CUDA graph, replayed on a stream of its own.

At preset ``small`` a step is hundreds of small kernels: eager PyTorch spends more time
launching them than the GPU spends running them, and one process runs one kernel at a time.
Here each run's step (forward, backward, clipping, AdamW) is captured once per length bucket
and replayed; runs on different streams overlap on the GPU (``mqarbench/runner/pack.py``).

A graph needs fixed shapes and no host synchronisation, so the step differs from the eager
one only in how it finds the labelled positions: not by a boolean mask (a data-dependent
shape), but by an index into the batch's flattened positions, computed on the host for each
batch of the epoch and padded to the most labels any batch of the run holds in that bucket
(the padding is ignored by the loss); a short last batch is filled with a blank row that has
no labels. The loss is the same mean over the same labelled positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mqarbench.kernels.cross_entropy import label_cross_entropy
from mqarbench.models.heads import has_split_head
from mqarbench.runner.evaluate import autocast
from mqarbench.runner.batches import epoch_plan
from mqarbench.runner.plan import RunSpec
from mqarbench.runner.train import Member, StepCallback, TrainData

# Eager steps per bucket before capture: Triton autotuning, cuFFT plans, lazy caches and the
# optimizer's state are all created outside the graph.
WARMUP_STEPS = 2


@dataclass
class StaticBucket:
    """One length bucket with a blank last row (PAD input, no labels)."""

    input_ids: torch.Tensor  # (N + 1, L) on the device
    positions: np.ndarray  # (N + 1, Q) labelled positions of each row, 0-padded
    targets: np.ndarray  # (N + 1, Q) their labels, -100 in the padding

    @property
    def blank(self) -> int:
        return self.input_ids.shape[0] - 1

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    def labels_per_row(self) -> np.ndarray:  # (N + 1,)
        return (self.targets != -100).sum(1)

    def flat_labels(self, rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The labelled positions of a batch of ``rows`` (B,) as indices into its flattened (B * L)
        hidden states, in row-major order, and their targets; padded to ``size`` with (0, -100)."""
        pos, tgt = self.positions[rows], self.targets[rows]  # (B, Q)
        valid = tgt != -100
        flat = (np.arange(len(rows))[:, None] * self.length + pos)[valid]
        index = np.zeros(size, dtype=np.int64)
        target = np.full(size, -100, dtype=np.int64)
        index[: len(flat)], target[: len(flat)] = flat, tgt[valid]
        return index, target

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``static_loss``'s rows, index and target for the batch of ``rows`` (B,), on the bucket's
        device, with exactly that batch's labels (no padding): one step outside a graph."""
        n = int(self.labels_per_row()[rows].sum())
        index, target = self.flat_labels(rows, n)
        device = self.input_ids.device
        return tuple(torch.from_numpy(a).to(device) for a in (rows, index, target))


def label_table(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For labels (N, L): positions (N, Q) and targets (N, Q) of each row's labelled positions in
    order, Q = the most labels in a row; padding is position 0 with target -100."""
    mask = labels != -100  # (N, L)
    counts = mask.sum(1)
    q = max(1, int(counts.max()) if len(counts) else 1)
    positions = np.zeros((len(labels), q), dtype=np.int64)
    targets = np.full((len(labels), q), -100, dtype=np.int64)
    rows, cols = np.nonzero(mask)  # row-major
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    positions[rows, slot] = cols
    targets[rows, slot] = labels[rows, cols]
    return positions, targets


def static_buckets(data: TrainData, device: torch.device) -> list[StaticBucket]:
    """The split's buckets in graph form, built once per split and shared by its members."""
    if not data.static:
        for ids, labels in data.host_buckets:
            positions, targets = label_table(labels)
            pad = lambda a, v: np.concatenate([a, np.full((1, a.shape[1]), v, dtype=a.dtype)])  # noqa: E731
            data.static.append(StaticBucket(torch.from_numpy(pad(ids, 0)).to(device),
                                            pad(positions, 0), pad(targets, -100)))
    return data.static


def static_loss(model: torch.nn.Module, input_ids: torch.Tensor, rows: torch.Tensor,
                index: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross entropy at ``index`` (N,) of the flattened (B * L) positions of ``input_ids[rows]``,
    against ``target`` (N,) (-100 = padding); fixed shapes throughout."""
    x = input_ids.index_select(0, rows)  # (B, L)
    with autocast(x.device):
        if has_split_head(model):
            hidden = model.hidden_states(x)  # (B, L, D)
            logits = model.logits(hidden.flatten(0, 1).index_select(0, index))  # (N, V)
        else:
            full = model(x)  # (B, L, V)
            logits = full.flatten(0, 1).index_select(0, index)  # (N, V)
    return label_cross_entropy(logits, target)


def label_budget(bucket: StaticBucket, plans: list[list[tuple[int, np.ndarray]]], b: int) -> int:
    """The most labels any batch of bucket ``b`` holds in ``plans`` (every epoch of a run)."""
    per_row = bucket.labels_per_row()
    return max([int(per_row[rows].sum()) for plan in plans for k, rows in plan if k == b] or [1])


class GraphedMember(Member):
    """A ``Member`` that trains by replaying one captured step per length bucket on ``stream``."""

    def __init__(self, spec: RunSpec, model: torch.nn.Module, data: TrainData, device: torch.device,
                 stream: torch.cuda.Stream, on_step: StepCallback | None = None):
        stream.wait_stream(torch.cuda.current_stream(device))  # the model was built on that stream
        with torch.cuda.stream(stream):
            super().__init__(spec, model, data, device, on_step, capturable=True)
        self.stream = stream
        self.static = static_buckets(data, device)
        hp = spec.hparams
        plans = [epoch_plan(data.sizes, hp.batch_size, spec.seed, e) for e in range(hp.epochs)]
        # static label count per bucket: the most any batch of this run will ever hold
        self.budget = [label_budget(bucket, plans, b) for b, bucket in enumerate(self.static)]
        self.rows = torch.zeros(hp.batch_size, dtype=torch.long, device=device)  # (B,)
        self.index = [torch.zeros(n, dtype=torch.long, device=device) for n in self.budget]  # (N_b,)
        self.target = [torch.full((n,), -100, dtype=torch.long, device=device) for n in self.budget]
        self.epoch_tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        with torch.cuda.stream(stream):
            self._capture()

    def _step_body(self, bucket: int) -> torch.Tensor:
        loss = static_loss(self.model, self.static[bucket].input_ids, self.rows, self.index[bucket],
                           self.target[bucket])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.hparams.grad_clip)
        self.optimizer.step()
        return loss

    def _capture(self) -> None:
        """Warm up and capture every bucket's step, leaving weights and optimizer state as they were."""
        params = [p.detach().clone() for p in self.model.parameters()]
        had_state = bool(self.optimizer.state)
        saved = {id(p): {k: v.clone() for k, v in s.items()} for p, s in self.optimizer.state.items()}
        batch = self.spec.hparams.batch_size
        for b, bucket in enumerate(self.static):
            rows = np.arange(batch) % bucket.blank
            index, target = bucket.flat_labels(rows, self.budget[b])
            self.rows.copy_(torch.from_numpy(rows))
            self.index[b].copy_(torch.from_numpy(index))
            self.target[b].copy_(torch.from_numpy(target))
            for _ in range(WARMUP_STEPS):
                self._step_body(b)
        for b in range(len(self.static)):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                loss = self._step_body(b)
            self.graphs[b] = (graph, loss)
        with torch.no_grad():
            for p, value in zip(self.model.parameters(), params):
                p.copy_(value)
            for p, state in self.optimizer.state.items():
                for k, v in state.items():
                    if had_state:
                        v.copy_(saved[id(p)][k])
                    else:
                        v.zero_()  # the state AdamW creates on its first step

    def begin_epoch(self) -> None:
        with torch.cuda.stream(self.stream):
            super().begin_epoch()
            batch, width = self.spec.hparams.batch_size, max(self.budget)
            rows_table = np.empty((len(self.plan), batch), dtype=np.int64)  # (steps, B)
            index_table = np.zeros((len(self.plan), width), dtype=np.int64)  # (steps, N)
            target_table = np.full((len(self.plan), width), -100, dtype=np.int64)
            for i, (b, rows) in enumerate(self.plan):
                rows_table[i, : len(rows)] = rows
                rows_table[i, len(rows):] = self.static[b].blank
                n = self.budget[b]
                index_table[i, :n], target_table[i, :n] = self.static[b].flat_labels(rows_table[i], n)
            self.epoch_tables = tuple(torch.from_numpy(t).to(self.device)
                                      for t in (rows_table, index_table, target_table))

    def step(self) -> None:
        bucket, rows = self.plan[self.cursor]
        graph, loss = self.graphs[bucket]
        rows_table, index_table, target_table = self.epoch_tables
        n = self.budget[bucket]
        with torch.cuda.stream(self.stream):
            self.rows.copy_(rows_table[self.cursor])
            self.index[bucket].copy_(index_table[self.cursor, :n])
            self.target[bucket].copy_(target_table[self.cursor, :n])
            graph.replay()
            self.after_step(loss, len(rows) * self.static[bucket].length)

    def end_epoch(self, train_s: float | None = None) -> None:
        with torch.cuda.stream(self.stream):
            super().end_epoch(train_s)

    def release(self) -> None:
        """Free the graphs (their memory pool) once the member has finished training."""
        self.stream.synchronize()
        self.graphs.clear()
