"""The suite's tables as the paper prints them, from result rows (selected lr, mean ± std over seeds)."""

from __future__ import annotations

import json

import pyarrow as pa
from rich.table import Table

from mqarbench.data import load_suite
from mqarbench.data.suites import TABLES
from mqarbench.results.select import select_best_lr
from mqarbench.runner.metrics import spread

UNITS = {"fig6a": "share of answers per block, %"}  # every other table: query accuracy


def title(table: str) -> str:
    return f"{TABLES.get(table, table)}: {UNITS.get(table, 'query accuracy, %')}"


def _overall(results: pa.Table) -> list[dict]:
    rows = select_best_lr(results).to_pylist()
    return [r for r in rows if r["slice"] == "overall"]


def _score(rows: list[dict], model: str, train: str, test: str) -> str:
    return str(spread([r["query_accuracy"] for r in rows
                       if (r["model"], r["train_task"], r["test_task"]) == (model, train, test)]))


def suite_tables(suite: str, results: pa.Table) -> list[Table]:
    """One rich table per table of the suite (in the suite's order), models as rows."""
    experiments = load_suite(suite).experiments
    rows = _overall(results)
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = []
    for name in dict.fromkeys(e.table for e in experiments):
        exps = [e for e in experiments if e.table == name]
        table = Table(title=title(name))
        if name == "fig6a":
            n_blocks = max((len(json.loads(r["block_shares_json"])) for r in rows if r["block_shares_json"]),
                           default=4)
            table.add_column("model", no_wrap=True)
            for col in ["trained on", "any block", *[f"block {b + 1}" for b in range(n_blocks)]]:
                table.add_column(col)
            for model in models:
                for e in exps:
                    mine = [r for r in rows if (r["model"], r["train_task"], r["test_task"]) == (model, e.train, e.test)]
                    shares = [json.loads(r["block_shares_json"]) for r in mine if r["block_shares_json"]]
                    table.add_row(model, e.train, _score(mine, model, e.train, e.test),
                                  *[str(spread([100 * s[b] for s in shares])) for b in range(n_blocks)])
        elif name in ("table1", "table2"):
            tests = list(dict.fromkeys(e.test for e in exps))
            table.add_column("model", no_wrap=True)
            for col in ["train \\ test", *tests]:
                table.add_column(col)
            for model in models:
                for train in dict.fromkeys(e.train for e in exps):
                    table.add_row(model, train, *[_score(rows, model, train, t) for t in tests])
        else:
            table.add_column("model", no_wrap=True)
            for e in exps:
                table.add_column(e.name)
            for model in models:
                table.add_row(model, *[_score(rows, model, e.train, e.test) for e in exps])
        out.append(table)
    return out
