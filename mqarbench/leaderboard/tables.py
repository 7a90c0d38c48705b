"""The paper's tables as plain rows: what the site renders and what the downloads hold."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mqarbench.leaderboard.boards import Board, BoardEntry, Score
from mqarbench.leaderboard.catalog import Column
from mqarbench.leaderboard.shortcut import ShortcutScore


@dataclass
class LeaderRow:
    """One model in the Table 3 leaderboard of one board."""

    entry: BoardEntry
    scores: list[Score | None]  # one per column, None: not run
    best: list[bool]  # per column: the best mean of the board, where it singles anyone out

    @property
    def average(self) -> float | None:
        """Mean over the columns, only where every column ran (a partial mean would mislead)."""
        if not self.scores or any(s is None for s in self.scores):
            return None
        return statistics.fmean(s.mean for s in self.scores)

    @property
    def shortcut(self) -> ShortcutScore:
        """Positional and n-gram transfer ratios, and the hidden-attention shares where the runs
        saved maps (README, "Shortcut score")."""
        return ShortcutScore.of(self.entry.score, self.entry.attention_shares())


def leader_rows(board: Board, columns: list[Column]) -> list[LeaderRow]:
    """Rows in the default order: average (complete rows first), then columns run, then name."""
    rows = [LeaderRow(e, [e.score(c.train, c.test) for c in columns], []) for e in board.entries]
    rows = [r for r in rows if any(s is not None for s in r.scores)]
    for i in range(len(columns)):
        means = [r.scores[i].mean for r in rows if r.scores[i] is not None]
        top = max(means, default=None)
        # a column where nobody scored, or everybody scored the same, has no best to mark
        marked = top is not None and top > 0 and min(means) < top
        for r in rows:
            r.best.append(marked and r.scores[i] is not None and r.scores[i].mean == top)
    return sorted(rows, key=lambda r: (r.average is None, -(r.average or 0.0),
                                       -sum(s is not None for s in r.scores), r.entry.entry.name))


def matrix(entry: BoardEntry, columns: list[Column]) -> tuple[list[str], list[str], list[list[Score | None]]]:
    """A train x test matrix (Tables 1 and 2): row labels, column labels, scores."""
    trains = list(dict.fromkeys(c.train for c in columns))
    tests = list(dict.fromkeys(c.test for c in columns))
    return trains, tests, [[entry.score(tr, te) for te in tests] for tr in trains]


def _score_fields(score: Score | None) -> dict:
    if score is None:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(score.mean, 4), "std": round(score.std, 4), "n": score.n}


def _base(board: Board, e: BoardEntry) -> dict:
    return {"board": board.id, "preset": board.preset, "model": e.entry.name, "entry": e.entry.key,
            "params": e.params, "state_size": e.state_size, "verified": bool(e.entry.verified)}


def export_rows(boards: list[Board], columns: dict[str, list[Column]]) -> dict[str, list[dict]]:
    """Every table in long form: {file stem: rows}. One row per (board, model, train, test[, cell])."""
    out: dict[str, list[dict]] = {"table3": [], "table1": [], "table2": [], "fig6a": [], "cells": []}
    for board in boards:
        for e in board.entries:
            for table in ("table3", "table1", "table2"):
                for c in columns.get(table, []):
                    score = e.score(c.train, c.test)
                    if score is not None:
                        out[table].append({**_base(board, e), "column": c.name, "train_task": c.train,
                                           "test_task": c.test, **_score_fields(score)})
            for c in columns.get("fig6a", []):
                shares = e.block_shares(c.train, c.test)
                for block, share in enumerate(shares or []):
                    out["fig6a"].append({**_base(board, e), "train_task": c.train, "test_task": c.test,
                                         "block": block, "answer_share": round(share, 4)})
            for train, test in e.pairs():
                for (seq_len, kv), score in e.cells(train, test).items():
                    out["cells"].append({**_base(board, e), "train_task": train, "test_task": test,
                                         "seq_len": seq_len, "num_kv_pairs": kv, **_score_fields(score)})
    return out
