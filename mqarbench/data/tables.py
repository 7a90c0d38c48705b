"""Arrow tables of generated examples, and the content digest that does not depend on file bytes.

One row per example; rows of one grid cell are contiguous and form one Parquet row group, so
a reader can bucket batches by length.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np
import pyarrow as pa

from mqarbench.data.generators import CellData

LIST_COLUMNS = ("input_ids", "labels", "query_index", "pair_starts", "query_starts", "candidates")
INT_COLUMNS = ("seq_len", "num_kv_pairs", "num_queries", "num_blocks")


def schema(family: str, metadata: dict[str, str] | None = None) -> pa.Schema:
    lists = [c for c in LIST_COLUMNS if c != "candidates" or family == "position_robustness"]
    ints = [c for c in INT_COLUMNS if c != "num_blocks" or family == "position_robustness"]
    fields = [pa.field(c, pa.list_(pa.int32())) for c in lists] + [pa.field(c, pa.int32()) for c in ints]
    return pa.schema(fields, metadata=metadata)


def _list_array(rows2d: np.ndarray) -> pa.ListArray:
    rows, width = rows2d.shape
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.ascontiguousarray(rows2d).reshape(-1)))


def cell_table(data: CellData, family: str, seq_len: int, num_kv_pairs: int) -> pa.Table:
    rows = data.input_ids.shape[0]
    const = lambda v: pa.array(np.full(rows, v, dtype=np.int32))  # noqa: E731
    columns = {
        "input_ids": _list_array(data.input_ids),
        "labels": _list_array(data.labels),
        "query_index": _list_array(data.query_index),
        "pair_starts": _list_array(data.pair_starts),
        "query_starts": _list_array(data.query_starts),
        "seq_len": const(seq_len),
        "num_kv_pairs": const(num_kv_pairs),
        "num_queries": const(data.query_starts.shape[1]),
    }
    if family == "position_robustness":
        columns["candidates"] = _list_array(data.candidates)
        columns["num_blocks"] = const(data.num_blocks)
    sch = schema(family)
    return pa.Table.from_arrays([columns[name] for name in sch.names], schema=sch)


def digest(batches: Iterable[pa.RecordBatch | pa.Table]) -> str:
    """sha256 over column names, list lengths and int32 values, independent of how rows are chunked."""
    hashers: dict[str, hashlib._Hash] = {}

    def feed(key: str, array: np.ndarray) -> None:
        hashers.setdefault(key, hashlib.sha256()).update(np.ascontiguousarray(array, dtype="<i4").tobytes())

    for batch in batches:
        for name in batch.schema.names:
            column = batch.column(name)
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            for chunk in chunks:
                if pa.types.is_list(chunk.type):
                    feed(name + "/lengths", chunk.value_lengths().to_numpy(zero_copy_only=False))
                    feed(name + "/values", chunk.flatten().to_numpy(zero_copy_only=False))
                else:
                    feed(name, chunk.to_numpy(zero_copy_only=False))
    total = hashlib.sha256()
    for key in sorted(hashers):
        total.update(key.encode() + b"\0" + hashers[key].digest())
    return total.hexdigest()
