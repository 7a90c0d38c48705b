"""The run matrix: one content-addressed run per (model, train task, learning rate, seed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mqarbench.data import Dataset, build_dataset, load_suite, load_task
from mqarbench.runner.hparams import HParams


@dataclass(frozen=True)
class TaskRef:
    """A built dataset, by what results record about it."""

    task: str
    version: int
    content_hash: str
    path: str  # dataset directory

    @classmethod
    def of(cls, ds: Dataset) -> "TaskRef":
        return cls(ds.task_id, ds.version, ds.content_hash, str(ds.path))

    def open(self) -> Dataset:
        return Dataset.open(Path(self.path))


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; picklable, so any executor can ship it to a worker."""

    run_id: str
    model: str  # adapter reference (registry name, module:Class or file.py)
    adapter_name: str
    adapter_version: str
    model_config: dict
    vocab_size: int
    max_len: int
    preset: str
    train: TaskRef
    tests: tuple[TaskRef, ...]
    hparams: HParams
    seed: int
    out_dir: str
    allow_slow_kernels: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / "runs" / self.run_id

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "hparams": self.hparams.model_dump(mode="json")}

    @classmethod
    def from_json(cls, obj: dict) -> "RunSpec":
        return cls(**{**obj, "train": TaskRef(**obj["train"]), "tests": tuple(TaskRef(**t) for t in obj["tests"]),
                      "hparams": HParams(**obj["hparams"])})


def run_id(adapter_name: str, adapter_version: str, model_config: dict, train: TaskRef,
           hparams: HParams, seed: int, preset: str) -> str:
    """Short sha256 of everything that decides a run's trained weights."""
    return run_id_from_key(adapter_name, adapter_version, model_config,
                           [train.task, train.version, train.content_hash], hparams.model_dump(mode="json"),
                           seed, preset)


def run_id_from_key(adapter_name: str, adapter_version: str, model_config: dict, train: list,
                    hparams: dict, seed: int, preset: str) -> str:
    """``run_id`` from recorded values (what result rows hold), so validation can recompute it."""
    key = {"adapter": adapter_name, "adapter_version": adapter_version, "config": model_config,
           "train": list(train), "hparams": hparams, "seed": seed, "preset": preset}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def suite_datasets(suite: str, preset: str, data_dir: Path, progress=None) -> dict[str, Dataset]:
    """Build (or reuse) every dataset the suite uses; ``progress(task)`` is called after each."""
    s = load_suite(suite)
    tasks = list(dict.fromkeys([t for e in s.experiments for t in (e.train, e.test)]))
    out = {}
    for task in tasks:
        out[task] = build_dataset(task, preset, data_dir)
        if progress:
            progress(task)
    return out


def train_tokens(spec: RunSpec) -> int:
    """Tokens one run trains on (all epochs): its cost, up to the model's speed."""
    ds = spec.train.open()
    per_epoch = sum(seq_len * count for (seq_len, _), count in zip(ds.spec.grid.cells, ds.spec.counts["train"]))
    return per_epoch * spec.hparams.epochs


def max_seq_len(datasets: list[Dataset]) -> int:
    return max(length for ds in datasets for length, _ in ds.cells())


def plan_run(adapter, ref: str, train: Dataset, tests: list[Dataset], preset: str, hparams: HParams,
             seed: int, out_dir: Path, allow_slow_kernels: bool = False) -> RunSpec:
    """The run of adapter ``ref`` trained on ``train`` and tested on ``tests``."""
    vocab = load_task(train.task_id).vocab_size
    max_len = max_seq_len([train, *tests])
    config = adapter.config(preset, vocab, max_len)
    train_ref = TaskRef.of(train)
    return RunSpec(
        run_id=run_id(adapter.name, str(adapter.version), config, train_ref, hparams, seed, preset),
        model=ref, adapter_name=adapter.name, adapter_version=str(adapter.version), model_config=config,
        vocab_size=vocab, max_len=max_len, preset=preset, train=train_ref,
        tests=tuple(TaskRef.of(t) for t in tests), hparams=hparams, seed=seed, out_dir=str(out_dir),
        allow_slow_kernels=allow_slow_kernels)


def plan_runs(models: list[str], suite: str, preset: str, datasets: dict[str, Dataset],
              sweep: list[HParams], seeds: list[int], out_dir: Path,
              allow_slow_kernels: bool = False) -> list[RunSpec]:
    """Every run of the matrix, in (model, train task, lr, seed) order."""
    from mqarbench.models.registry import load_adapter

    s = load_suite(suite)
    return [plan_run(adapter, ref, datasets[train], [datasets[t] for t in s.tests_for(train)], preset, hp,
                     seed, out_dir, allow_slow_kernels)
            for ref in models for adapter in [load_adapter(ref)]
            for train in s.train_tasks() for hp in sweep for seed in seeds]
