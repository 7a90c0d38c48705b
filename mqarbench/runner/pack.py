"""Many runs trained side by side in one process: a rolling pack.

At preset ``small`` one run leaves most of a GPU idle, and worker processes only time-slice it.
Here up to K runs train at once in this process, each a ``Member`` with its own model, optimizer,
schedule, data order, validation, checkpoints and results. On CUDA each replays a captured step
on a stream of its own (``mqarbench/runner/graphs.py``), so their kernels overlap. On request
(``stack``), the runs of a model with a stacked form (``mqarbench/models/stacked.py``) train as
one stack instead: one batched forward and backward for all of them per step
(``mqarbench/runner/stacked.py``); on an H200 at ``small`` that is about as fast as the graphs.
When a run finishes, the next one in the queue takes its place; a new run is admitted only while
the GPU's free memory holds one more member (measured on the members already running).

Packing changes no result: a member computes what it would compute alone (run ids unchanged).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Callable

import torch

from mqarbench.models.stacked import can_stack
from mqarbench.runner.job import OpenRun, finish_run, open_run, read_run_json
from mqarbench.runner.lock import try_lock
from mqarbench.runner.plan import RunSpec
from mqarbench.runner.stacked import Stack, stack_key
from mqarbench.runner.train import Member, TrainData

# (spec, record) when a run finishes
Done = Callable[[RunSpec, dict], None]
# (spec, epoch, step, steps per epoch) after every optimizer step of any member
Step = Callable[[RunSpec, int, int, int], None]
MAX_PACK = 64  # runs at once when --pack is not given (memory usually binds first)
RESERVE_FRACTION = 0.08  # GPU memory kept free for evaluation and the allocator's slack
FIRST_STACK = 8  # members a stack starts with on a GPU, before its first step measures their memory


@dataclass
class Slot:
    run: OpenRun
    member: Member
    lock: int  # the descriptor holding the run's lock file
    peers: int = 1  # the most runs trained at once while this one trained
    stack: Stack | None = None  # the stack that trains it, if any


def _admit_member(run: OpenRun, data: TrainData, graphs: bool, streams: list,
                  on_step: Step | None) -> Member:
    spec = run.spec
    step = _step_callback(spec, on_step)
    if not graphs:
        return Member(spec, run.model, data, run.device, step)
    from mqarbench.runner.graphs import GraphedMember

    stream = streams.pop() if streams else torch.cuda.Stream(run.device)
    try:
        return GraphedMember(spec, run.model, data, run.device, stream, step)
    except BaseException:
        streams.append(stream)
        raise


def _declined(spec: RunSpec) -> str | None:
    """The adapter's own reason not to be captured in CUDA graphs, if it gives one."""
    from mqarbench.models.registry import load_adapter

    return getattr(load_adapter(spec.model), "no_pack_reason", None)


def train_pack(specs: list[RunSpec], done: Done, max_pack: int | None = None,
               report: Callable[[str], None] = print, on_step: Step | None = None,
               stack: bool = False) -> list[RunSpec]:
    """Train and evaluate ``specs`` as a rolling pack of at most ``max_pack`` runs (default: as many
    as fit in GPU memory); with ``stack``, the runs of a model with a stacked form train as stacks.
    Returns the runs left to train one at a time: those whose model cannot be captured in a CUDA
    graph, and those another process holds (``job.execute`` waits for them)."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    graphs = device.type == "cuda"
    limit = max_pack or MAX_PACK
    stacking = stack and limit != 1  # a pack of one is exactly today's unpacked run
    queue, active = deque(specs), []
    unpackable: dict[str, str] = {}  # model ref -> why
    left: list[RunSpec] = []
    data_cache: dict[str, TrainData] = {}
    streams: list = []
    stacks: dict[tuple, Stack] = {}
    per_member = 0  # the most memory one admission took (bytes)

    def fits(stack: Stack | None = None) -> bool:
        if not graphs:
            return True
        if stack is not None and stack.member_bytes is None and len(stack.members) >= FIRST_STACK:
            return False  # wait for the stack's first step to measure what a member costs
        if not active:
            return True
        need = max([per_member] + [s.member_bytes or 0 for s in stacks.values()])
        free, total = torch.cuda.mem_get_info(device)
        return free - need > RESERVE_FRACTION * total

    def admit() -> None:
        nonlocal per_member
        while queue and len(active) < limit and fits():
            key = stack_key(queue[0])
            if key in stacks and not fits(stacks[key]):
                break  # that stack waits for its first step to measure what a member costs
            spec = queue.popleft()
            if spec.model in unpackable:
                left.append(spec)
                continue
            declined = _declined(spec) if graphs else None
            if declined:
                unpackable[spec.model] = declined
                report(f"note: {spec.adapter_name} trains one run at a time: {declined}")
                left.append(spec)
                continue
            lock = try_lock(spec.run_dir)
            if lock is None:  # another mqarbench process trains it: never twice at once
                report(f"run {spec.run_id}: held by another mqarbench process; taken up after the pack")
                left.append(spec)
                continue
            run = open_run(spec, alone=False)  # peak memory: the whole pack's
            if run is None or not run.needs_training:
                try:
                    done(spec, read_run_json(spec.run_dir) if run is None else finish_run(run))
                finally:
                    os.close(lock)
                continue
            stack = None
            if stacking and can_stack(run.model):
                member = Member(spec, run.model, _data(spec), run.device, _step_callback(spec, on_step))
                stack = stacks.setdefault(key, Stack(device))
            else:
                before = torch.cuda.memory_reserved(device) if graphs else 0
                try:
                    member = _admit_member(run, _data(spec), graphs, streams, on_step)
                except Exception as err:  # noqa: BLE001 - a model whose step cannot be captured
                    why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    unpackable[spec.model] = why
                    report(f"note: {spec.adapter_name} cannot train in a pack ({why}); its runs train one at a time")
                    left.append(spec)
                    os.close(lock)
                    del run
                    if graphs:
                        torch.cuda.synchronize(device)
                        torch.cuda.empty_cache()
                    continue
                if graphs:
                    per_member = max(per_member, torch.cuda.memory_reserved(device) - before)
            slot = Slot(run, member, lock, stack=stack)
            if member.done:  # resumed after its last epoch: only the tests are left
                _finish(slot, done, streams)
                continue
            member.begin_epoch()
            if stack is not None:
                stack.add(member)
            active.append(slot)
            for other in active:
                other.peers = max(other.peers, len(active))

    def _data(spec: RunSpec) -> TrainData:
        data = data_cache.get(spec.train.path) or TrainData.load(spec, device)
        data_cache[spec.train.path] = data
        return data

    admit()
    while active:
        finished = False
        for slot in list(active):
            member = slot.member
            if member.epoch_finished:
                if slot.stack is not None:
                    slot.stack.sync(member)
                member.end_epoch()
                if member.done:
                    active.remove(slot)
                    if slot.stack is not None:
                        slot.stack.remove(member)
                    _finish(slot, done, streams)
                    finished = True
                    continue
                member.begin_epoch()
            if slot.stack is None:
                member.step()
        measured = False
        for stack in stacks.values():
            if stack.members:
                unmeasured = stack.member_bytes is None
                stack.round()
                measured |= unmeasured and stack.member_bytes is not None
        if finished and graphs:
            torch.cuda.empty_cache()
        if finished or measured:
            admit()
    return left


def _step_callback(spec: RunSpec, on_step: Step | None):
    return (lambda e, s, n: on_step(spec, e, s, n)) if on_step else None


def _finish(slot: Slot, done: Done, streams: list) -> None:
    member = slot.member
    if hasattr(member, "release"):
        member.release()
        streams.append(member.stream)
    try:
        path = "stacked" if slot.stack is not None else "graphed" if hasattr(member, "release") else "eager"
        done(slot.run.spec, finish_run(slot.run, member.state, pack_size=slot.peers, train_path=path))
    finally:
        os.close(slot.lock)
