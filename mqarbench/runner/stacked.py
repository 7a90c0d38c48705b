"""Runs of one stackable model trained as one stacked computation (``mqarbench/models/stacked.py``).

Each run is still a ``Member`` (``mqarbench/runner/train.py``) with its own model, optimizer,
schedule, data order, validation and checkpoints. The stack holds the working copy of the
members' weights and AdamW moments as (K, ...) tensors and, per round, takes one optimizer step
for every member:
- the members' next batches are grouped by length; each group's forward and backward runs once,
  on its members' slices of the stacked weights (so members of several training tasks share it);
- each member's gradient is clipped by its own norm, then AdamW updates the stack with each
  member's own learning rate (its schedule), weight decay and step count, as ``torch.optim.AdamW``.
Before a member validates or checkpoints, its slices are copied into its model and optimizer
(``sync``), so selection, checkpoints, resume and tests are the code of a run trained alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mqarbench.models.stacked import Params, stack_parameters
from mqarbench.runner.evaluate import autocast
from mqarbench.runner.graphs import static_buckets
from mqarbench.runner.plan import RunSpec
from mqarbench.runner.train import Member

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults, which every Member uses
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_


def stack_key(spec: RunSpec) -> tuple:
    """Runs that can share a stack: one model, one configuration, one batch size."""
    return spec.model, repr(sorted(spec.model_config.items())), spec.hparams.batch_size


class Stack:
    """The members of one ``stack_key`` trained together; membership changes between rounds."""

    def __init__(self, device: torch.device):
        self.device = device
        self.members: list[Member] = []
        self.dirty = True  # membership changed: restack before the next round
        self.params: Params = {}
        self.exp_avg: Params = {}
        self.exp_avg_sq: Params = {}
        self.steps: list[int] = []  # AdamW steps taken, per member
        self.tables: dict[int, torch.Tensor] = {}  # length -> every member dataset's rows of it
        self.offsets: dict[tuple[int, int], int] = {}  # (id(TrainData), bucket) -> first row in its table
        self.member_bytes: int | None = None  # GPU memory one member's step takes, once measured
        self.epoch_tables: dict[int, EpochTable] = {}  # id(member) -> its epoch's batches
        self.clip = torch.zeros(0)  # (K,) each member's gradient clipping norm

    # ---- membership ----

    def add(self, member: Member) -> None:
        self._sync_all()
        # the stack steps for the member's optimizer, whose scheduler would otherwise warn that
        # it is stepped before its optimizer ever was
        member.optimizer._opt_called = True  # type: ignore[attr-defined]
        self.members.append(member)
        self.dirty = True

    def remove(self, member: Member) -> None:
        self._sync_all()
        self.members.remove(member)
        self.dirty = True

    def sync(self, member: Member) -> None:
        """Copy the member's weights and AdamW state from the stack into its model and optimizer."""
        if self.dirty or member not in self.members:
            return  # the member's own copy is current (it has not trained since the last restack)
        k = self.members.index(member)
        named = dict(member.model.named_parameters())
        with torch.no_grad():
            for name, param in named.items():
                param.copy_(self.params[name][k])
                if self.steps[k]:
                    member.optimizer.state[param] = {
                        "step": torch.tensor(float(self.steps[k])),
                        "exp_avg": self.exp_avg[name][k].clone(),
                        "exp_avg_sq": self.exp_avg_sq[name][k].clone()}

    def _sync_all(self) -> None:
        for member in self.members:
            self.sync(member)

    def _restack(self) -> None:
        members = self.members
        self.params = stack_parameters([m.model for m in members])
        named = [dict(m.model.named_parameters()) for m in members]
        states = [[m.optimizer.state.get(p, {}) for p in n.values()] for m, n in zip(members, named)]

        def moments(key: str) -> Params:
            return {name: torch.stack([st[i][key] if key in st[i] else torch.zeros_like(n[name])
                                       for st, n in zip(states, named)]).detach()
                    for i, name in enumerate(self.params)}
        self.exp_avg, self.exp_avg_sq = moments("exp_avg"), moments("exp_avg_sq")
        self.steps = [int(float(st[0]["step"])) if st and "step" in st[0] else 0 for st in states]
        self._build_tables()
        self.epoch_tables = {}  # their rows point into the tables just rebuilt
        self.clip = torch.tensor([m.spec.hparams.grad_clip for m in members], device=self.device)
        self.dirty = False

    def _build_tables(self) -> None:
        """One device tensor of rows per length over every dataset of the stack (blank rows too)."""
        parts: dict[int, list[torch.Tensor]] = {}
        self.offsets = {}
        seen: set[int] = set()
        for member in self.members:
            if id(member.data) in seen:
                continue
            seen.add(id(member.data))
            for b, bucket in enumerate(static_buckets(member.data, self.device)):
                rows = parts.setdefault(bucket.length, [])
                self.offsets[(id(member.data), b)] = sum(len(t) for t in rows)
                rows.append(bucket.input_ids)
        self.tables = {length: torch.cat(rows) for length, rows in parts.items()}

    # ---- training ----

    def round(self) -> None:
        """One optimizer step for every member, each on the next batch of its epoch."""
        if self.dirty:
            self._restack()
        measure = self.device.type == "cuda" and self.member_bytes is None
        before = torch.cuda.memory_allocated(self.device) if measure else 0
        tables = [self._epoch_table(k) for k in range(len(self.members))]
        groups: dict[int, list[int]] = {}
        for k, (member, table) in enumerate(zip(self.members, tables)):
            groups.setdefault(int(table.lengths[member.cursor]), []).append(k)
        losses = torch.zeros(len(self.members), device=self.device)  # (K,)
        for length, ks in groups.items():
            self._forward_backward(length, ks, tables, losses)
        self._optimizer_step()
        for k, (member, table) in enumerate(zip(self.members, tables)):
            member.after_step(losses[k], int(table.tokens[member.cursor]))
        if measure:  # the process's peak bounds this step's from above: a safe estimate
            peak = torch.cuda.max_memory_allocated(self.device)
            self.member_bytes = max(1, (peak - before) // len(self.members))

    def _epoch_table(self, k: int) -> "EpochTable":
        """Member k's batches of this epoch as arrays, built once per epoch (rows already offset
        into the length tables)."""
        member = self.members[k]
        table = self.epoch_tables.get(id(member))
        if table is None or table.epoch != member.epoch:
            table = EpochTable.build(member, self.offsets)
            self.epoch_tables[id(member)] = table
        return table

    def _forward_backward(self, length: int, ks: list[int], tables: list["EpochTable"],
                          losses: torch.Tensor) -> None:
        """Forward and backward of the members ``ks``, whose next batches all have ``length``."""
        batch = self.members[ks[0]].spec.hparams.batch_size
        steps = [self.members[k].cursor for k in ks]
        counts = [int(tables[k].counts[i]) for k, i in zip(ks, steps)]
        width = max(1, max(counts))
        rows = np.stack([tables[k].rows[i] for k, i in zip(ks, steps)])  # (K_b, B)
        index = np.zeros((len(ks), width), dtype=np.int64)  # (K_b, N) into the flat (K_b * B * L)
        target = np.full((len(ks), width), -100, dtype=np.int64)
        for j, (k, i, n) in enumerate(zip(ks, steps, counts)):
            index[j, :n] = tables[k].index[i, :n] + j * batch * length
            target[j, :n] = tables[k].target[i, :n]
        rows, index, target, picked = self._to_device(rows, index, target, np.array(ks, dtype=np.int64))
        members = len(ks)
        if members == len(self.members):
            params = self.params
        else:
            params = {n: p.index_select(0, picked) for n, p in self.params.items()}
        model = self.members[0].model
        input_ids = self.tables[length].index_select(0, rows.flatten()).view(members, batch, length)
        with autocast(self.device):
            hidden = model.stacked_hidden_states(params, input_ids)  # (K_b, B, L, D)
            at_labels = hidden.flatten(0, 2).index_select(0, index.flatten()).view(members, width, -1)
            logits = model.stacked_logits(params, at_labels)  # (K_b, N, V)
        per_label = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=-100,
                                    reduction="none").view(members, width)  # (K_b, N)
        loss = per_label.sum(1) / (target != -100).sum(1).clamp_min(1)  # (K_b,) each member's mean
        loss.sum().backward()
        losses.index_copy_(0, picked, loss.detach())

    def _to_device(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        """Host arrays of one dtype to the device in one copy that never waits for the GPU's queue
        (pinned memory, non-blocking): a synchronous copy would stall the host once per step."""
        flat = torch.from_numpy(np.concatenate([a.ravel() for a in arrays]))
        if self.device.type == "cuda":
            flat = flat.pin_memory().to(self.device, non_blocking=True)
        out, start = [], 0
        for a in arrays:
            out.append(flat[start:start + a.size].view(a.shape))
            start += a.size
        return out

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        """Per-member gradient clipping, then AdamW with per-member lr, weight decay and step."""
        members = self.members
        names = list(self.params)
        params = [self.params[n] for n in names]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(len(members), -1).float(), dim=1)
                             for g in grads]).square().sum(0).sqrt()  # (K,)
        coef = (self.clip / (norms + CLIP_EPS)).clamp(max=1.0)  # (K,)
        for k in range(len(members)):
            self.steps[k] += 1
        lr = np.array([float(m.optimizer.param_groups[0]["lr"]) for m in members])
        wd = np.array([m.optimizer.param_groups[0]["weight_decay"] for m in members])
        steps = np.array(self.steps, dtype=np.float64)
        b1, b2 = BETAS
        table = np.stack([1 - lr * wd, lr / (1 - b1 ** steps), np.sqrt(1 - b2 ** steps)]).astype(np.float32)
        decay, step_size, bc2_sqrt = self._to_device(table)[0]
        per = lambda v: [v.view((len(members),) + (1,) * (p.dim() - 1)) for p in params]  # noqa: E731
        moments, squares = [self.exp_avg[n] for n in names], [self.exp_avg_sq[n] for n in names]
        torch._foreach_mul_(grads, per(coef))
        torch._foreach_mul_(params, per(decay))
        torch._foreach_lerp_(moments, grads, 1 - b1)
        torch._foreach_mul_(squares, b2)
        torch._foreach_addcmul_(squares, grads, grads, 1 - b2)
        denom = torch._foreach_sqrt(squares)
        torch._foreach_div_(denom, per(bc2_sqrt))
        torch._foreach_add_(denom, EPS)
        update = torch._foreach_mul(moments, per(step_size))
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(params, update)
        for p in params:
            p.grad = None


@dataclass
class EpochTable:
    """One member's epoch: per step the batch length, rows into that length's table (blank rows
    fill a short batch), labelled positions in the flattened (B * L) batch and their targets
    (padded with 0 / -100), the label count and the tokens trained."""

    epoch: int
    lengths: np.ndarray  # (S,)
    rows: np.ndarray  # (S, B)
    index: np.ndarray  # (S, N)
    target: np.ndarray  # (S, N)
    counts: np.ndarray  # (S,)
    tokens: np.ndarray  # (S,)

    @classmethod
    def build(cls, member: Member, offsets: dict[tuple[int, int], int]) -> "EpochTable":
        batch, buckets = member.spec.hparams.batch_size, member.data.static
        per_row = [bucket.labels_per_row() for bucket in buckets]
        steps = len(member.plan)
        rows = np.empty((steps, batch), dtype=np.int64)
        lengths, counts, tokens = (np.zeros(steps, dtype=np.int64) for _ in range(3))
        picks = []
        for i, (b, batch_rows) in enumerate(member.plan):
            bucket = buckets[b]
            padded = np.full(batch, bucket.blank, dtype=np.int64)
            padded[: len(batch_rows)] = batch_rows
            counts[i] = per_row[b][padded].sum()
            picks.append(bucket.flat_labels(padded, int(counts[i])))
            rows[i] = padded + offsets[(id(member.data), b)]
            lengths[i], tokens[i] = bucket.length, len(batch_rows) * bucket.length
        width = max(1, int(counts.max()) if steps else 1)
        index = np.zeros((steps, width), dtype=np.int64)
        target = np.full((steps, width), -100, dtype=np.int64)
        for i, (idx, tgt) in enumerate(picks):
            index[i, : len(idx)], target[i, : len(tgt)] = idx, tgt
        return cls(member.epoch, lengths, rows, index, target, counts, tokens)
