"""Schema-valid result sets for the leaderboard tests, generated against the real tiny tasks.

The numbers are synthetic (a deterministic function of model, tasks and cell) and live only in
the tests' temporary directories.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mqarbench.leaderboard.catalog import TaskCatalog
from mqarbench.leaderboard.metadata import SubmissionMetadata, write_metadata
from mqarbench.leaderboard.validate import recorded_run_id
from mqarbench.results.schema import RESULTS_SCHEMA, SCHEMA_VERSION
from mqarbench.results.store import to_table, write_results
from mqarbench.results.store import read_results


def synthetic_score(*parts) -> float:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return round(100.0 * int.from_bytes(digest[:4], "big") / 2**32, 3)


def run_rows(catalog: TaskCatalog, model: str, train: str, tests: list[str], *, preset="tiny",
             seed=0, lr=1e-3, valid=80.0, offset=0.0, run_id=None, family="ssm") -> list[dict]:
    """The rows one run writes: an overall row and one row per grid cell for every test task."""
    train_ref = catalog.ref(train, preset)
    hparams_json = json.dumps({"lr": lr, "epochs": 2, "batch_size": 32}, sort_keys=True)
    config_json = json.dumps({"d_model": 64, "n_layers": 2})
    run_id = run_id or recorded_run_id({
        "model": model, "adapter_version": "1", "model_config_json": config_json, "train_task": train,
        "train_task_version": train_ref.version, "train_task_hash": train_ref.content_hash,
        "hparams_json": hparams_json, "seed": seed, "preset": preset})
    rows = []
    for test in tests:
        ref = catalog.ref(test, preset)
        base = {name: None for name in RESULTS_SCHEMA.names}
        base.update(
            schema_version=SCHEMA_VERSION, run_id=run_id, model=model, adapter_version="1",
            model_family=family, params=123_456, state_size=2_048,
            model_config_json=config_json, preset=preset,
            train_task=train, train_task_version=train_ref.version, train_task_hash=train_ref.content_hash,
            test_task=test, test_task_version=ref.version, test_task_hash=ref.content_hash,
            lr=lr, seed=seed, epochs=2, batch_size=32, hparams_json=hparams_json, best_epoch=1,
            valid_query_accuracy=valid, kernel_paths_json=json.dumps({"selective_scan": "reference"}),
            torch_version="2.13.0", cuda_version=None, mqarbench_version="0.1.0", gpu_name=None,
            wall_time_s=12.5, train_tokens_per_s=5e4, peak_memory_mb=None,
            created_at="2025-01-01T00:00:00Z",
        )
        cells = []
        for seq_len, kv in sorted(ref.cells):
            acc = min(100.0, synthetic_score(model, train, test, seq_len, kv, seed) * 0.5 + offset)
            cells.append({**base, "slice": "cell", "seq_len": seq_len, "num_kv_pairs": kv,
                          "query_accuracy": acc, "token_accuracy": acc, "example_exact_match": acc / 2,
                          "num_examples": 32, "num_queries": 32 * kv})
        mean = sum(c["query_accuracy"] for c in cells) / len(cells)
        shares = json.dumps([0.55, 0.25, 0.15, 0.05]) if test == "position-robustness" else None
        rows.append({**base, "slice": "overall", "query_accuracy": mean, "token_accuracy": mean,
                     "example_exact_match": mean / 2, "num_examples": 32 * len(cells),
                     "num_queries": sum(c["num_queries"] for c in cells), "block_shares_json": shares})
        rows += cells
    return rows


def suite_runs(catalog: TaskCatalog, suites: tuple[str, ...]) -> dict[str, list[str]]:
    """train task -> its test tasks, for every experiment of ``suites`` (each run once)."""
    runs: dict[str, list[str]] = {}
    for suite in suites:
        for _, train, test in catalog.suite_pairs(suite):
            if test not in runs.setdefault(train, []):
                runs[train].append(test)
    return runs


def write_runs(out: Path, catalog: TaskCatalog, model: str, suites: tuple[str, ...] = ("main",), *,
               attention=False, **kwargs) -> Path:
    """A runner-like output directory: ``out/runs/<run_id>/results.parquet`` + run.json."""
    for train, tests in suite_runs(catalog, suites).items():
        rows = run_rows(catalog, model, train, tests, **kwargs)
        run_dir = out / "runs" / rows[0]["run_id"]
        write_results(to_table(rows), run_dir / "results.parquet")
        (run_dir / "run.json").write_text(json.dumps({"run_id": rows[0]["run_id"], "model": model}))
        if attention:
            length = 64
            (run_dir / "attention").mkdir()
            maps = np.tril(np.random.default_rng(0).random((2, length, length))).astype(np.float16)
            ids, labels = np.arange(100, 100 + length, dtype=np.int32), np.full(length, -100, np.int32)
            ids[:2], ids[10], labels[10] = (7, 8), 7, 8  # the pair (7 8) first, its query at 10
            np.savez(run_dir / "attention" / f"{tests[0]}.npz", maps=maps, input_ids=ids, labels=labels)
    return out


def write_submission(root: Path, name: str, catalog: TaskCatalog, model: str, *, suites=("main",),
                     meta: dict | None = None, **kwargs) -> Path:
    sub = root / name
    write_runs(sub, catalog, model, tuple(suites), **kwargs)
    fields = {"model_name": model, "authors": "A. Author", "link": "https://example.org/paper",
              "adapter_source": "https://example.org/adapter", "preset": kwargs.get("preset", "tiny"),
              "date": "2025-01-01", "suites": list(suites), **(meta or {})}
    write_metadata(sub / "metadata.yaml", SubmissionMetadata.model_validate(fields))
    return sub


@pytest.fixture(scope="session")
def catalog(tmp_path_factory) -> TaskCatalog:
    return TaskCatalog(tmp_path_factory.mktemp("lb-data"))


def test_fixture_rows_match_the_current_tasks(catalog, tmp_path):
    out = write_runs(tmp_path, catalog, "m")
    rows = [r for f in out.rglob("results.parquet") for r in read_results(f).to_pylist()]
    overall = [r for r in rows if r["slice"] == "overall"]
    assert {(r["train_task"], r["test_task"]) for r in overall} == {
        (tr, te) for _, tr, te in catalog.suite_pairs("main")}
    for r in overall:
        cells = [c["query_accuracy"] for c in rows if c["slice"] == "cell"
                 and c["run_id"] == r["run_id"] and c["test_task"] == r["test_task"]]
        assert len(cells) == len(catalog.ref(r["test_task"], "tiny").cells) > 0
        assert r["query_accuracy"] == pytest.approx(sum(cells) / len(cells))
