"""One run end to end: build the model, train (or resume), evaluate on every paired test task, write results.

``execute`` is what every executor calls; it is idempotent: a finished run returns at once,
an interrupted one resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from mqarbench.errors import UserError
from mqarbench.io import write_json_atomic
from mqarbench.results.store import RESULTS_FILE, results_or_none, to_table, write_results
from mqarbench.runner.lock import hold_run
from mqarbench.runner.plan import RunSpec, TaskRef
from mqarbench.runner.rows import result_rows

RUN_JSON = "run.json"

if TYPE_CHECKING:  # torch is imported where a run executes: listing runs needs none of it
    import torch


def read_run_json(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None


def _existing_results(run_dir: Path) -> pa.Table | None:
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return None
    return results_or_none(path)  # corrupt, unverified or outdated: every test is evaluated again


def missing_tests(spec: RunSpec) -> list[TaskRef]:
    """Paired test tasks without a result (of the same dataset hash) in the run directory."""
    table = _existing_results(spec.run_dir)
    done = set()
    if table is not None:
        done = {(r["test_task"], r["test_task_hash"]) for r in table.select(["test_task", "test_task_hash"]).to_pylist()}
    return [t for t in spec.tests if (t.task, t.content_hash) not in done]


def is_finished(spec: RunSpec) -> bool:
    """Trained, with its best checkpoint, and evaluated on every paired test task."""
    info = read_run_json(spec.run_dir)
    return bool(info and info.get("trained") and (spec.run_dir / "best.pt").exists()
                and not missing_tests(spec))


@dataclass
class OpenRun:
    """A run ready to train or to be evaluated: its model on the device and its record so far."""

    spec: RunSpec
    model: torch.nn.Module
    device: torch.device
    record: dict
    info: dict  # the run.json found on disk (empty if none)
    best: dict | None  # the best checkpoint, when training had already finished
    t0: float

    @property
    def needs_training(self) -> bool:
        return self.best is None


def open_run(spec: RunSpec, alone: bool = True) -> OpenRun | None:
    """Build and check the run's model and write its ``run.json``; None if the run is finished.
    ``alone``: the run has the process to itself, so the GPU's peak memory is its own."""
    import torch

    from mqarbench.kernels import slow_paths
    from mqarbench.kernels.determinism import deterministic_chosen, make_deterministic
    from mqarbench.kernels.cross_entropy import training_kernel_choices
    from mqarbench.models.checks import check_forward
    from mqarbench.models.registry import load_adapter
    from mqarbench.runner.envinfo import environment, pick_device
    from mqarbench.runner.evaluate import autocast

    if is_finished(spec):
        return None
    t0 = time.perf_counter()
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device()
    make_deterministic(device)  # before the model's first kernel, as MQARBENCH_DETERMINISTIC says
    if device.type == "cuda" and alone:
        torch.cuda.reset_peak_memory_stats(device)
    adapter = load_adapter(spec.model)
    torch.manual_seed(spec.seed)
    model = adapter.build(spec.preset, spec.vocab_size, spec.max_len).to(device)
    with autocast(device):  # in training's precision: no kernel is compiled for a dtype it never uses
        check_forward(adapter.name, model, spec.vocab_size, spec.max_len)
    slow = slow_paths(model)
    if slow and not spec.allow_slow_kernels:
        # each reason names its own fix: an import to install, or (fla's refusal) a Triton to upgrade
        raise UserError(f"model {adapter.name!r} would train on reference kernels on CUDA ({'; '.join(slow)}); "
                        "apply the fix named there, or pass --allow-slow-kernels to train on them anyway")
    info = read_run_json(run_dir) or {}
    record = {
        "run_id": spec.run_id, "model": adapter.name, "model_ref": spec.model,
        "adapter_version": spec.adapter_version, "model_family": adapter.family,
        "model_config": spec.model_config, "params": sum(p.numel() for p in model.parameters()),
        "state_size": int(adapter.state_size(spec.preset, spec.vocab_size, spec.max_len)),
        "preset": spec.preset, "train_task": spec.train.task, "train_task_version": spec.train.version,
        "train_task_hash": spec.train.content_hash, "test_tasks": [t.task for t in spec.tests],
        "hparams": spec.hparams.model_dump(mode="json"), "seed": spec.seed,
        "kernel_paths": {op: c.path for op, c in sorted(training_kernel_choices(model, device).items())},
        "deterministic": deterministic_chosen(),
        **environment(device),
        "spec": spec.to_json(), "trained": bool(info.get("trained")), "attempts": info.get("attempts", 0) + 1,
    }
    best = _recover_best(spec, device) if record["trained"] else None
    record["trained"] = best is not None
    write_json_atomic(run_dir / RUN_JSON, record)
    return OpenRun(spec, model, device, record, info, best, t0)


def _recover_best(spec: RunSpec, device) -> dict | None:
    """The best checkpoint of a trained run; a corrupt one sends the run back to training."""
    from mqarbench.runner.checkpoint import CorruptCheckpoint, load_checkpoint, remove_checkpoint
    from mqarbench.runner.train import BEST, CHECKPOINT

    try:
        return load_checkpoint(spec.run_dir / BEST, map_location=device)
    except CorruptCheckpoint as err:
        print(f"warning: {err}; training this run again", file=sys.stderr)
        remove_checkpoint(spec.run_dir / CHECKPOINT)
        remove_checkpoint(spec.run_dir / BEST)
        return None


def finish_run(run: OpenRun, state=None, pack_size: int = 1, train_path: str = "eager") -> dict:
    """Record training (``state``, a ``TrainState``, when this call trained the run, and how:
    ``train_path`` eager, graphed or stacked), load the best weights, evaluate every missing test
    task and write results and ``run.json``."""
    from mqarbench.runner.batches import load_cells
    from mqarbench.runner.checkpoint import load_checkpoint
    from mqarbench.runner.envinfo import peak_memory_mb
    from mqarbench.runner.evaluate import evaluate_cells, save_attention
    from mqarbench.runner.train import BEST
    from mqarbench.runner.weights import export_selected

    spec, record, info, device, model = run.spec, run.record, run.info, run.device, run.model
    run_dir = spec.run_dir
    best = run.best
    if state is not None:
        timing = {"train_s": state.train_s, "data_s": state.data_s, "eval_s": state.eval_s}
        record.update(best_epoch=state.best_epoch, valid_query_accuracy=state.best_valid,
                      history=state.history, pack_size=pack_size, train_path=train_path,
                      train_tokens_per_s=state.train_tokens / state.train_s if state.train_s else 0.0)
        best = load_checkpoint(run_dir / BEST, map_location=device)
    else:
        timing = dict(info.get("timing", {}))
        record.update({k: info[k] for k in ("best_epoch", "valid_query_accuracy", "history",
                                            "train_tokens_per_s", "pack_size", "train_path") if k in info})
    model.load_state_dict(best["model"])
    export_selected(model, run_dir)  # what is evaluated below is exactly what a submission carries
    record["trained"] = True
    record["peak_memory_mb"] = max(peak_memory_mb(device), info.get("peak_memory_mb", 0.0))

    t_test = time.perf_counter()
    old = _existing_results(run_dir)
    keep = [] if old is None else [r for r in old.to_pylist()
                                   if (r["test_task"], r["test_task_hash"]) in {(t.task, t.content_hash) for t in spec.tests}]
    data_s = 0.0
    new_rows = []
    for test in missing_tests(spec):
        t_data = time.perf_counter()
        cells = load_cells(test.open(), "test")
        data_s += time.perf_counter() - t_data
        scores = evaluate_cells(model, cells, device, spec.hparams.eval_batch_size)
        save_attention(model, cells, device, run_dir / "attention" / f"{test.task}.npz")
        new_rows.append((test, scores))
    timing["data_s"] = timing.get("data_s", 0.0) + data_s
    timing["eval_s"] = timing.get("eval_s", 0.0) + time.perf_counter() - t_test - data_s
    timing["wall_s"] = timing.get("wall_s", 0.0) + time.perf_counter() - run.t0
    timing["overhead_s"] = max(0.0, timing["wall_s"] - timing["train_s"] - timing["data_s"] - timing["eval_s"])
    record["timing"] = timing
    record["wall_time_s"] = timing["wall_s"]
    record["created_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = keep + [r for test, scores in new_rows for r in result_rows(record, test, scores)]
    write_results(to_table(rows), run_dir / RESULTS_FILE)
    write_json_atomic(run_dir / RUN_JSON, record)
    return record


def execute(spec: RunSpec, on_step=None) -> dict:
    """Run ``spec`` to completion on its own, under its lock (one process per run); return its
    ``run.json`` record."""
    with hold_run(spec.run_dir):
        return _execute(spec, on_step)


def _execute(spec: RunSpec, on_step=None) -> dict:
    from mqarbench.runner.train import train_model

    run = open_run(spec)
    if run is None:
        return read_run_json(spec.run_dir)
    state = train_model(spec, run.model, run.device, on_step) if run.needs_training else None
    return finish_run(run, state)
