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

import numpy as np
import torch
import torch.nn.functional as F

from mqarbench.models.stacked import Params, stack_parameters
from mqarbench.runner.evaluate import autocast
from mqarbench.runner.graphs import StaticBucket, static_buckets
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
        groups: dict[int, list[int]] = {}
        for k in range(len(self.members)):
            groups.setdefault(self._next_length(k), []).append(k)
        losses = torch.zeros(len(self.members), device=self.device)  # (K,)
        tokens = [0] * len(self.members)
        for ks in groups.values():
            self._forward_backward(ks, losses, tokens)
        self._optimizer_step()
        for k, member in enumerate(self.members):
            member.after_step(losses[k], tokens[k])
        if measure:  # the process's peak bounds this step's from above: a safe estimate
            peak = torch.cuda.max_memory_allocated(self.device)
            self.member_bytes = max(1, (peak - before) // len(self.members))

    def _next_length(self, k: int) -> int:
        member = self.members[k]
        return member.data.static[member.plan[member.cursor][0]].length

    def _batches(self, ks: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """For a group of members whose next batches share one length: rows into that length's
        table (K_b, B), label indices into the group's flattened (K_b * B * L) hidden states and
        their targets (K_b, N), padded with (0, -100); and each member's tokens."""
        batch = self.members[ks[0]].spec.hparams.batch_size
        rows_all = np.empty((len(ks), batch), dtype=np.int64)
        picks, tokens = [], []
        for j, k in enumerate(ks):
            member = self.members[k]
            b, rows = member.plan[member.cursor]
            bucket: StaticBucket = member.data.static[b]
            padded = np.full(batch, bucket.blank, dtype=np.int64)  # a short batch: blank rows, no labels
            padded[: len(rows)] = rows
            rows_all[j] = padded + self.offsets[(id(member.data), b)]
            count = int(bucket.labels_per_row()[padded].sum())
            index, target = bucket.flat_labels(padded, count)
            picks.append((index + j * batch * bucket.length, target))
            tokens.append(len(rows) * bucket.length)
        width = max(1, max(len(i) for i, _ in picks))
        index = np.zeros((len(ks), width), dtype=np.int64)
        target = np.full((len(ks), width), -100, dtype=np.int64)
        for j, (i, t) in enumerate(picks):
            index[j, : len(i)], target[j, : len(t)] = i, t
        return rows_all, index, target, tokens

    def _to_device(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        """Host arrays to the device in one copy that does not wait for the GPU's queue."""
        flat = torch.from_numpy(np.concatenate([a.ravel() for a in arrays]))
        if self.device.type == "cuda":
            flat = flat.pin_memory().to(self.device, non_blocking=True)
        out, start = [], 0
        for a in arrays:
            out.append(flat[start:start + a.size].view(a.shape))
            start += a.size
        return out

    def _forward_backward(self, ks: list[int], losses: torch.Tensor, tokens: list[int]) -> None:
        rows, index, target, group_tokens = self._batches(ks)
        rows, index, target = self._to_device(rows, index, target)
        members, batch = rows.shape
        length = self._next_length(ks[0])
        model = self.members[0].model
        if members == len(self.members):
            picked_members, params = None, self.params
        else:
            picked_members = torch.tensor(ks, device=self.device)
            params = {n: p.index_select(0, picked_members) for n, p in self.params.items()}
        input_ids = self.tables[length].index_select(0, rows.flatten()).view(members, batch, length)
        with autocast(self.device):
            hidden = model.stacked_hidden_states(params, input_ids)  # (K_b, B, L, D)
            at_labels = hidden.flatten(0, 2).index_select(0, index.flatten()).view(members, -1, hidden.shape[-1])
            logits = model.stacked_logits(params, at_labels)  # (K_b, N, V)
        per_label = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=-100,
                                    reduction="none").view(members, -1)  # (K_b, N)
        loss = per_label.sum(1) / (target != -100).sum(1).clamp_min(1)  # (K_b,) each member's mean
        loss.sum().backward()
        if picked_members is None:
            losses.copy_(loss.detach())
        else:
            losses.index_copy_(0, picked_members, loss.detach())
        for j, k in enumerate(ks):
            tokens[k] = group_tokens[j]

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        """Per-member gradient clipping, then AdamW with per-member lr, weight decay and step."""
        members = self.members
        grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in self.params.items()}
        norms = torch.stack([g.reshape(len(members), -1).float().square().sum(1) for g in grads.values()]).sum(0).sqrt()
        clip = torch.tensor([m.spec.hparams.grad_clip for m in members], device=self.device)
        coef = (clip / (norms + CLIP_EPS)).clamp(max=1.0)  # (K,)
        for k in range(len(members)):
            self.steps[k] += 1
        lr = np.array([float(m.optimizer.param_groups[0]["lr"]) for m in members])
        wd = np.array([m.optimizer.param_groups[0]["weight_decay"] for m in members])
        steps = np.array(self.steps, dtype=np.float64)
        b1, b2 = BETAS
        table = np.stack([1 - lr * wd, lr / (1 - b1 ** steps), np.sqrt(1 - b2 ** steps)]).astype(np.float32)
        decay, step_size, bc2_sqrt = self._to_device(table)[0]
        for name, param in self.params.items():
            shape = (len(members),) + (1,) * (param.dim() - 1)
            grad = grads[name].mul_(coef.view(shape))
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            param.mul_(decay.view(shape))
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt.view(shape)).add_(EPS)
            param.addcdiv_(m * step_size.view(shape), denom, value=-1.0)
            param.grad = None
