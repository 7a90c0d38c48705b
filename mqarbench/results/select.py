"""Model selection over the learning-rate sweep, shared by the runner's tables and the leaderboard.

For each (model, adapter version, preset, train task, seed) the sweep keeps the learning rate with
the best validation query accuracy (ties go to the smaller rate); its rows are the reported ones.
"""

from __future__ import annotations

import pyarrow as pa

SWEEP_KEY = ("model", "adapter_version", "preset", "train_task", "train_task_hash", "seed")


def select_best_lr(table: pa.Table) -> pa.Table:
    """Keep only the rows of the selected learning rate of every sweep."""
    if table.num_rows == 0:
        return table
    best: dict[tuple, tuple[float, float]] = {}
    for row in table.select([*SWEEP_KEY, "lr", "valid_query_accuracy"]).to_pylist():
        key = tuple(row[k] for k in SWEEP_KEY)
        score = row["valid_query_accuracy"]
        candidate = (-(score if score is not None else -1.0), row["lr"])
        if key not in best or candidate < best[key]:
            best[key] = candidate
    keep = [
        best[tuple(row[k] for k in SWEEP_KEY)][1] == row["lr"]
        for row in table.select([*SWEEP_KEY, "lr"]).to_pylist()
    ]
    return table.filter(pa.array(keep))
