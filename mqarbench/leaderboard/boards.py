"""Group results into boards: one per (preset, task-version set), never ranked across boards.

Within a board each entry's rows are reduced to the reported ones (the learning rate with the
best validation accuracy of every sweep) and scores are mean ± std over seeds.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from mqarbench.leaderboard.shortcut import ATTENTION_CELL, load_attention_shares
from mqarbench.leaderboard.sources import Entry
from mqarbench.presets import PRESETS
from mqarbench.results.score import Score
from mqarbench.results.select import select_best_lr

TaskVersions = dict[str, tuple[int, str]]  # task -> (version, content hash)


@dataclass
class BoardEntry:
    entry: Entry
    rows: pa.Table  # reported rows only: one preset, one task-version set, best learning rates
    dropped_rows: int = 0  # rows of other versions of a task this entry also ran

    @cached_property
    def _overall(self) -> list[dict]:
        return self.rows.filter(pc.equal(self.rows["slice"], "overall")).to_pylist()

    def _first(self, column: str):
        values = [r[column] for r in self._overall if r[column] is not None]
        return Counter(values).most_common(1)[0][0] if values else None

    @property
    def params(self) -> int | None:
        return self._first("params")

    @property
    def state_size(self) -> int | None:
        return self._first("state_size")

    @property
    def family(self) -> str:
        """The model family its results record ("other" where they record none)."""
        return self._first("model_family") or "other"

    def pairs(self) -> list[tuple[str, str]]:
        return sorted({(r["train_task"], r["test_task"]) for r in self._overall})

    def score(self, train: str, test: str, metric: str = "query_accuracy") -> Score | None:
        values = [r[metric] for r in self._overall
                  if r["train_task"] == train and r["test_task"] == test and r[metric] is not None]
        return Score(tuple(values)) if values else None

    def valid_score(self, train: str) -> Score | None:
        """Validation query accuracy (in-domain, the selection metric) of the reported runs
        trained on ``train``: one value per run, so per seed."""
        by_run = {r["run_id"]: r["valid_query_accuracy"] for r in self._overall
                  if r["train_task"] == train and r["valid_query_accuracy"] is not None}
        return Score(tuple(by_run[run] for run in sorted(by_run))) if by_run else None

    def attention_shares(self, train: str = ATTENTION_CELL[0],
                         test: str = ATTENTION_CELL[1]) -> tuple[Score, Score] | None:
        """(true-pair share, first-positions share) of the hidden attention, in percent over the
        reported runs trained on ``train`` that saved a map of ``test`` (``attention/<test>.npz``;
        the paper's Fig. 4); None where none did (attention models, or maps left on the GPU)."""
        run_ids = sorted({r["run_id"] for r in self._overall if r["train_task"] == train and r["test_task"] == test})
        maps = [self.entry.run_dirs[r] / "attention" / f"{test}.npz" for r in run_ids if r in self.entry.run_dirs]
        shares = [load_attention_shares(path) for path in maps if path.is_file()]
        if not shares:
            return None
        return Score(tuple(100 * pair for pair, _ in shares)), Score(tuple(100 * first for _, first in shares))

    def cells(self, train: str, test: str) -> dict[tuple[int, int], Score]:
        """Query accuracy per (seq_len, num_kv_pairs) grid cell, over seeds."""
        by_cell: dict[tuple[int, int], list[float]] = {}
        for r in self.rows.filter(pc.equal(self.rows["slice"], "cell")).to_pylist():
            if r["train_task"] == train and r["test_task"] == test and r["query_accuracy"] is not None:
                by_cell.setdefault((r["seq_len"], r["num_kv_pairs"]), []).append(r["query_accuracy"])
        return {cell: Score(tuple(v)) for cell, v in sorted(by_cell.items())}

    def block_shares(self, train: str, test: str) -> list[float] | None:
        """Share of answers (percent) taken from each block, mean over seeds."""
        per_seed = [block_share_list(r["block_shares_json"]) for r in self._overall
                    if r["train_task"] == train and r["test_task"] == test and r["block_shares_json"]]
        per_seed = [s for s in per_seed if s]
        if not per_seed or len({len(s) for s in per_seed}) != 1:
            return None
        return [statistics.fmean(col) for col in zip(*per_seed)]


def block_share_list(text: str) -> list[float]:
    """``block_shares_json`` (a list, or a mapping block -> share) as percents in block order."""
    value = json.loads(text)
    if isinstance(value, dict):
        value = [value[k] for k in sorted(value, key=lambda k: int(k))]
    shares = [float(v) for v in value]
    return [100.0 * v for v in shares] if sum(shares) <= 1.0 + 1e-6 else shares


# (task, preset, content hash) -> the preset version whose data have that hash, or None
PresetVersionOf = Callable[[str, str, str], "int | None"]


@dataclass
class Board:
    preset: str
    tasks: TaskVersions
    entries: list[BoardEntry]
    preset_version: int | None = None  # the preset's version whose data the tasks' hashes match

    @property
    def id(self) -> str:
        digest = hashlib.sha256(json.dumps(sorted(self.tasks.items())).encode()).hexdigest()[:8]
        return f"{self.preset}-{digest}"

    @property
    def label(self) -> str:
        versions = sorted({v for v, _ in self.tasks.values()})
        preset = self.preset if self.preset_version is None else f"{self.preset} v{self.preset_version}"
        return f"preset {preset} · task version{'s' if len(versions) > 1 else ''} " + \
            ", ".join(f"v{v}" for v in versions) + f" · {self.id.split('-')[-1]}"


def _task_versions(rows: list[dict]) -> TaskVersions:
    """The version of each task this entry reports: the newest, then the most used hash."""
    counts: Counter = Counter()
    for r in rows:
        counts[(r["train_task"], r["train_task_version"], r["train_task_hash"])] += 1
        counts[(r["test_task"], r["test_task_version"], r["test_task_hash"])] += 1
    chosen: TaskVersions = {}
    for (task, version, digest), n in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[1])):
        chosen[task] = (version, digest)  # sorted ascending: the newest, most used wins
    return chosen


def _matches(row: dict, tasks: TaskVersions) -> bool:
    return (tasks.get(row["train_task"]) == (row["train_task_version"], row["train_task_hash"])
            and tasks.get(row["test_task"]) == (row["test_task_version"], row["test_task_hash"]))


def _compatible(a: TaskVersions, b: TaskVersions) -> bool:
    return all(b[t] == v for t, v in a.items() if t in b)


def build_boards(entries: list[Entry], preset_version: PresetVersionOf | None = None) -> list[Board]:
    """Split every entry by preset and task versions and group compatible ones into boards.

    ``preset_version(task, preset, hash)`` names the preset version a task hash belongs to (the
    site passes its catalog's); boards of the newest version of a preset come first."""
    boards: list[Board] = []
    for entry in entries:
        table = select_best_lr(entry.table)
        for preset in sorted(set(table["preset"].to_pylist())):
            rows = table.filter(pc.equal(table["preset"], preset))
            pylist = rows.to_pylist()
            tasks = _task_versions(pylist)
            keep = [_matches(r, tasks) for r in pylist]
            board_entry = BoardEntry(entry, rows.filter(pa.array(keep, pa.bool_())), keep.count(False))
            board = next((b for b in boards if b.preset == preset and _compatible(tasks, b.tasks)), None)
            if board is None:
                boards.append(Board(preset, dict(tasks), [board_entry]))
            else:
                board.tasks.update(tasks)
                board.entries.append(board_entry)
    if preset_version is not None:
        for board in boards:
            found = {preset_version(task, board.preset, digest) for task, (_, digest) in board.tasks.items()}
            board.preset_version = found.pop() if len(found) == 1 else None
    order = {preset: i for i, preset in enumerate(reversed(PRESETS))}  # the largest preset first
    return sorted(boards, key=lambda b: (order.get(b.preset, len(order)), -(b.preset_version or 0),
                                         -len(b.entries), b.id))
