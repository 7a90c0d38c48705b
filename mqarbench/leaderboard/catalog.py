"""What the current ``tasks/`` expect: task versions and hashes per preset, grid cells, suites.

Everything the leaderboard knows about tasks comes through a ``TaskCatalog``, so validation and
the site compare submissions against the specs of this checkout (datasets are built once into a
cache directory; generation is fast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pyarrow.compute as pc

from mqarbench.data.suites import TABLES

__all__ = ["TABLES", "Column", "ExpectedTask", "TaskCatalog"]


@dataclass(frozen=True)
class ExpectedTask:
    """A task as the current specs build it at one preset."""

    task: str
    version: int
    content_hash: str
    cells: frozenset[tuple[int, int]]  # (seq_len, num_kv_pairs) of the test split
    preset_versions: Mapping[str, int] = field(default_factory=dict)  # hash -> preset version


@dataclass(frozen=True)
class Column:
    """One cell of a paper table: a model trained on ``train`` and tested on ``test``."""

    table: str
    name: str
    train: str
    test: str


def _tests(test: str | list[str]) -> list[str]:
    return [test] if isinstance(test, str) else list(test)


class TaskCatalog:
    """The task registry of ``mqarbench.data``, with datasets cached under ``data_dir``."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self._refs: dict[tuple[str, str], ExpectedTask | None] = {}

    def task_names(self) -> list[str]:
        from mqarbench.data import list_tasks

        return list(list_tasks())

    def suite_names(self) -> list[str]:
        from mqarbench.data import list_suites

        return list(list_suites())

    def spec(self, task: str) -> dict:
        from mqarbench.data import load_task

        return load_task(task).model_dump(mode="json")

    def dataset(self, task: str, preset: str):
        from mqarbench.data import build_dataset, load_task

        return build_dataset(load_task(task), preset, self.data_dir)

    def grid(self, task: str) -> dict[str, dict[tuple[int, int], int]]:
        """Test examples per (seq_len, num_kv_pairs) cell at each preset."""
        from mqarbench.data import PRESETS, load_task, resolve

        spec = load_task(task)
        out = {}
        for preset in PRESETS:
            resolved = resolve(spec, preset)
            out[preset] = dict(zip(resolved.cells, resolved.counts["test"]))
        return out

    def ref(self, task: str, preset: str) -> ExpectedTask | None:
        """The expected version, hash and test cells of ``task`` at ``preset``; None if unknown."""
        key = (task, preset)
        if key not in self._refs:
            from mqarbench.data.store import preset_version_hashes

            self._refs[key] = None
            if task in self.task_names():
                ds = self.dataset(task, preset)
                test = ds.load("test").select(["seq_len", "num_kv_pairs"])  # the cells scored
                cells = set(zip(pc.cast(test["seq_len"], "int64").to_pylist(),
                                pc.cast(test["num_kv_pairs"], "int64").to_pylist()))
                self._refs[key] = ExpectedTask(task, int(ds.version), str(ds.content_hash), frozenset(cells),
                                               preset_version_hashes(ds))
        return self._refs[key]

    def preset_version(self, task: str, preset: str, digest: str) -> int | None:
        """The version of ``preset`` whose data of ``task`` have content hash ``digest``."""
        ref = self.ref(task, preset)
        return None if ref is None else ref.preset_versions.get(digest)

    def suite_pairs(self, suite: str) -> list[tuple[str, str, str]]:
        """(experiment name, train task, test task) for every pair a suite requires."""
        from mqarbench.data import load_suite

        return [(e.name, e.train, t) for e in load_suite(suite).experiments for t in _tests(e.test)]

    def columns(self, table: str) -> list[Column]:
        """The cells of one paper table, in suite order, each once."""
        return _columns(self, table)


def _columns(catalog: TaskCatalog, table: str) -> list[Column]:
    from mqarbench.data import load_suite

    seen: dict[tuple[str, str], Column] = {}
    for suite in catalog.suite_names():
        for exp in load_suite(suite).experiments:
            if exp.table != table:
                continue
            tests = _tests(exp.test)
            for test in tests:
                name = exp.name if len(tests) == 1 else f"{exp.train} → {test}"
                seen.setdefault((exp.train, test), Column(table, name, exp.train, test))
    return list(seen.values())
