"""What each page shows, as plain objects for the templates (no HTML here except escaped SVG)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow.compute as pc

from mqarbench.leaderboard.boards import Board, BoardEntry, Score
from mqarbench.leaderboard.catalog import TABLES, Column
from mqarbench.leaderboard.svg import heatmap, share_bars
from mqarbench.leaderboard.tables import LeaderRow, leader_rows, matrix

CAPTIONS = {
    "table1": "Rows: training task; columns: test task. A model that recalls scores high off the diagonal too.",
    "table2": "Rows: training task; columns: test task. Low scores below the diagonal: an n-gram shortcut.",
    "fig6a": "Position robustness: every block holds the same keys with different values; "
             "the bars show which block each model's answers came from.",
}


@dataclass
class Figure:
    table: str
    title: str
    caption: str
    items: list[dict] = field(default_factory=list)  # {svg, name, key, family}


@dataclass
class BoardView:
    board: Board
    columns: list[Column]
    rows: list[LeaderRow]
    figures: list[Figure]


def entry_figures(e: BoardEntry, columns: dict[str, list[Column]]) -> dict[str, object]:
    """The SVG figures of one model: heatmaps for Tables 1 and 2, answer shares for Fig. 6a."""
    out = {}
    for table in ("table1", "table2"):
        cols = columns.get(table, [])
        rows, tests, scores = matrix(e, cols)
        if any(s is not None for line in scores for s in line):
            out[table] = heatmap(rows, tests, scores, f"{e.entry.name}: {TABLES[table]}")
    bars = [(c.train, e.block_shares(c.train, c.test)) for c in columns.get("fig6a", [])]
    if any(shares for _, shares in bars):
        out["fig6a"] = share_bars(bars, f"{e.entry.name}: {TABLES['fig6a']}")
    return out


def board_view(board: Board, columns: dict[str, list[Column]]) -> BoardView:
    figures = {t: Figure(t, TABLES[t], CAPTIONS[t]) for t in ("table1", "table2", "fig6a")}
    rows = leader_rows(board, columns.get("table3", []))
    ordered = [r.entry for r in rows] + [e for e in board.entries if e not in [r.entry for r in rows]]
    for e in ordered:
        for table, svg in entry_figures(e, columns).items():
            figures[table].items.append({"svg": svg, "name": e.entry.name, "key": e.entry.key,
                                         "family": e.family})
    return BoardView(board, columns.get("table3", []), rows, [f for f in figures.values() if f.items])


@dataclass
class ScoreLine:
    train: str
    test: str
    query: Score | None
    token: Score | None
    exact: Score | None
    cells: dict


def _json_pretty(text: str | None) -> str:
    if not text:
        return "not recorded"
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def model_part(board: Board, e: BoardEntry, columns: dict[str, list[Column]]) -> dict:
    """One model's section for one board (everything but attention maps and files)."""
    overall = e.rows.filter(pc.equal(e.rows["slice"], "overall")).to_pylist()
    first = overall[0] if overall else {}
    runs = {}
    for r in overall:
        runs.setdefault(r["run_id"], r)
    kernels = {}
    for r in overall:
        if r["kernel_paths_json"]:
            try:
                kernels.update(json.loads(r["kernel_paths_json"]))
            except ValueError:
                kernels["(unreadable)"] = r["kernel_paths_json"]
    return {
        "board": board, "entry": e, "dropped": e.dropped_rows,
        "model": first.get("model"), "adapter_version": first.get("adapter_version"),
        "family": first.get("model_family"),
        "config": _json_pretty(first.get("model_config_json")),
        "kernels": {str(k): str(v) for k, v in kernels.items()},
        "software": {"torch": first.get("torch_version"), "cuda": first.get("cuda_version"),
                     "mqarbench": first.get("mqarbench_version")},
        "scores": [ScoreLine(tr, te, e.score(tr, te), e.score(tr, te, "token_accuracy"),
                             e.score(tr, te, "example_exact_match"), e.cells(tr, te)) for tr, te in e.pairs()],
        "figures": [{"svg": svg, "title": TABLES[t]} for t, svg in entry_figures(e, columns).items()],
        "runs": sorted(runs.values(), key=lambda r: (r["train_task"], r["seed"], r["lr"])),
    }


def task_scores(boards: list[Board], task: str) -> list[dict]:
    """Every model's query accuracy on test task ``task``, per board and train task, best first."""
    out = []
    for board in boards:
        rows = [{"entry": e, "train": train, "score": score}
                for e in board.entries for train, test in e.pairs() if test == task
                for score in [e.score(train, test)] if score is not None]
        if rows:
            rows.sort(key=lambda r: (-r["score"].mean, r["entry"].entry.name.lower(), r["train"]))
            out.append({"board": board, "rows": rows})
    return out


def families(boards: list[Board]) -> list[str]:
    """The model families on the boards, for the board's family filter."""
    return sorted({e.family for b in boards for e in b.entries})
