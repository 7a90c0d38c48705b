"""Dataset splits as dense per-cell arrays, and length-bucketed training batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mqarbench.data import Dataset


@dataclass
class Cell:
    """One grid cell of one split; every row has the same length."""

    seq_len: int
    num_kv_pairs: int
    input_ids: np.ndarray  # (N, L) int64
    labels: np.ndarray  # (N, L) int64, -100 where nothing is predicted
    query_index: np.ndarray  # (N, L) int64, -1 outside queries
    candidates: np.ndarray | None = None  # (N, Q, B) int64, position-robustness only

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _dense(column: pa.ChunkedArray, rows: int) -> np.ndarray:
    flat = pa.concat_arrays([c.flatten() for c in column.chunks]) if column.num_chunks else pa.array([], pa.int32())
    return flat.to_numpy(zero_copy_only=False).astype(np.int64).reshape(rows, -1)


def _candidates(table: pa.Table) -> np.ndarray:
    """(N, Q, B) from the query-major ``candidates`` lists, padded with -1."""
    blocks = table.column("num_blocks").to_numpy()
    lists = table.column("candidates").to_pylist()
    q_max = max(len(c) // b for c, b in zip(lists, blocks))
    out = np.full((len(lists), q_max, int(blocks.max())), -1, dtype=np.int64)
    for i, (c, b) in enumerate(zip(lists, blocks)):
        out[i, : len(c) // b, :b] = np.asarray(c).reshape(-1, b)
    return out


def load_cells(dataset: Dataset, split: str) -> list[Cell]:
    """Every cell of ``split`` in grid order (the Parquet files hold one row group per cell)."""
    pf = pq.ParquetFile(dataset.split_path(split))
    cells = []
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group)
        if table.num_rows == 0:
            continue
        lengths = table.column("seq_len").to_numpy()
        pairs = table.column("num_kv_pairs").to_numpy()
        if (lengths != lengths[0]).any() or (pairs != pairs[0]).any():
            raise ValueError(f"{pf.metadata}: row group {group} mixes grid cells")
        n = table.num_rows
        cells.append(Cell(
            seq_len=int(lengths[0]), num_kv_pairs=int(pairs[0]),
            input_ids=_dense(table.column("input_ids"), n), labels=_dense(table.column("labels"), n),
            query_index=_dense(table.column("query_index"), n),
            candidates=_candidates(table) if "candidates" in table.column_names else None))
    return cells


def length_buckets(cells: list[Cell]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training buckets: (input_ids, labels) of all cells sharing a length, lengths ascending."""
    by_len: dict[int, list[Cell]] = {}
    for c in cells:
        by_len.setdefault(c.seq_len, []).append(c)
    return [(np.concatenate([c.input_ids for c in group]), np.concatenate([c.labels for c in group]))
            for _, group in sorted(by_len.items())]


def epoch_plan(sizes: list[int], batch_size: int, seed: int, epoch: int) -> list[tuple[int, np.ndarray]]:
    """(bucket, row indices) of every batch of one epoch: shuffled within each bucket, batch order
    shuffled, never mixing lengths. Depends only on (seed, epoch), so a resumed run sees the same batches.
    """
    rng = np.random.default_rng([seed, epoch])
    plan = []
    for b, size in enumerate(sizes):
        order = rng.permutation(size)
        plan += [(b, order[i: i + batch_size]) for i in range(0, size, batch_size)]
    return [plan[k] for k in rng.permutation(len(plan))]


def epoch_batches(buckets: list[tuple[np.ndarray, np.ndarray]], batch_size: int, seed: int,
                  epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (input_ids, labels) batches of ``epoch_plan``."""
    for b, rows in epoch_plan([len(ids) for ids, _ in buckets], batch_size, seed, epoch):
        yield buckets[b][0][rows], buckets[b][1][rows]


def batches_per_epoch(buckets: list[tuple[np.ndarray, np.ndarray]], batch_size: int) -> int:
    return sum(-(-len(ids) // batch_size) for ids, _ in buckets)
