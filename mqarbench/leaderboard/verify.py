"""Re-evaluate a submission's weights on the data the current ``tasks/`` generate; check every number.

A submission carries, for each reported run (the selected learning rate of every sweep), the
selected weights (``runs/<run_id>/weights.safetensors``, parameters in bf16) and, in ``run.json``,
its adapter reference. ``verify_submission`` rebuilds each model from the adapter, loads the
weights, evaluates it (evaluation only: a CPU is enough) and compares every reported number:
per cell and overall query accuracy, token accuracy, exact match, counts, answer shares, and the
validation accuracy that selected the run. A run that passes gets a stamp (a digest of its
files) under the verification directory; the site marks an entry verified only while every
reported run's files still match their stamp.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mqarbench.errors import UserError
from mqarbench.io import sha256_file, write_json_atomic
from mqarbench.leaderboard.catalog import TaskCatalog
from mqarbench.leaderboard.metadata import METADATA_FILE, load_metadata
from mqarbench.results.select import select_best_lr
from mqarbench.runner.weights import WEIGHTS_FILE

# Percent points a re-evaluated score may differ by: another device or kernel (bf16 GPU kernels
# against fp32 CPU code) flips a few near-tied argmax predictions; a forged number moves by more.
TOLERANCE = 1.0
METRICS = ("query_accuracy", "token_accuracy", "example_exact_match")
COUNTS = ("num_examples", "num_queries")
STAMPED_FILES = (WEIGHTS_FILE, "results.parquet", "results.json", "run.json")


@dataclass
class RunCheck:
    run_id: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def reported_run_ids(table: pa.Table) -> list[str]:
    """The runs whose rows the board reports (the selected learning rate of every sweep)."""
    return sorted(set(select_best_lr(table)["run_id"].to_pylist()))


def run_fingerprint(run_dir: Path) -> str:
    """A digest of the files a verification judged; any later change breaks the stamp."""
    h = hashlib.sha256()
    for name in STAMPED_FILES:
        path = Path(run_dir) / name
        h.update(f"{name}\0{sha256_file(path) if path.is_file() else '-'}\0".encode())
    return h.hexdigest()


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= TOLERANCE


def _shares_close(reported: str | None, counts: list[int] | None) -> bool:
    from mqarbench.leaderboard.boards import block_share_list
    from mqarbench.runner.metrics import block_shares

    if counts is None or reported is None:
        return counts is None and reported is None
    expected = block_share_list(json.dumps(block_shares(counts)))
    got = block_share_list(reported)
    return len(got) == len(expected) and all(abs(a - b) <= TOLERANCE for a, b in zip(got, expected))


def _compare(where: str, row: dict, scores: dict, counts: dict, block_counts, out: list[str]) -> None:
    for metric in METRICS:
        if not _close(row[metric], scores[metric]):
            out.append(f"{where}: {metric} reported {row[metric]}, re-evaluated {scores[metric]:.4f}")
    for name in COUNTS:
        if row[name] != counts[name]:
            out.append(f"{where}: {name} reported {row[name]}, the data have {counts[name]}")
    if not _shares_close(row["block_shares_json"], block_counts):
        out.append(f"{where}: block_shares_json reported {row['block_shares_json']} differs from the re-evaluation")


def _load_model(run_dir: Path, rows: list[dict], catalog: TaskCatalog, adapter_source: str, check: RunCheck):
    from mqarbench.data import load_task
    from mqarbench.models.registry import load_adapter
    from mqarbench.runner.weights import load_weights

    first = rows[0]
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        check.problems.append(f"{run_dir}: no {WEIGHTS_FILE}: this run cannot be verified")
        return None
    try:
        ref = json.loads((run_dir / "run.json").read_text()).get("model_ref") or first["model"]
    except (OSError, ValueError):
        ref = first["model"]
    try:
        adapter = load_adapter(ref)
    except UserError as err:
        check.problems.append(f"{run_dir}/run.json: adapter {ref!r} cannot be loaded here ({err}); "
                              f"install it from {adapter_source}")
        return None
    if adapter.name != first["model"] or str(adapter.version) != first["adapter_version"]:
        check.problems.append(f"{run_dir}: adapter {ref!r} is {adapter.name} v{adapter.version}, the results "
                              f"say {first['model']} v{first['adapter_version']}")
        return None
    preset = first["preset"]
    tasks = {first["train_task"], *(r["test_task"] for r in rows)}
    vocab = load_task(first["train_task"]).vocab_size
    max_len = max(seq_len for t in tasks for seq_len, _ in catalog.dataset(t, preset).cells())
    config = adapter.config(preset, vocab, max_len)
    if json.loads(json.dumps(config)) != json.loads(first["model_config_json"] or "null"):
        check.problems.append(f"{run_dir}: field 'model_config_json' differs from what adapter {ref!r} "
                              f"builds at preset '{preset}' ({json.dumps(config, sort_keys=True)})")
        return None
    model = adapter.build(preset, vocab, max_len)
    try:
        load_weights(model, weights)
    except ValueError as err:
        check.problems.append(str(err))
        return None
    return model


def verify_run(run_dir: Path, rows: list[dict], catalog: TaskCatalog, adapter_source: str = "its source") -> RunCheck:
    """Re-evaluate one run's weights and compare every reported number of ``rows`` (its rows)."""
    import torch

    from mqarbench.runner.batches import load_cells
    from mqarbench.runner.evaluate import evaluate_cells
    from mqarbench.runner.metrics import merged_block_counts, task_scores

    check = RunCheck(rows[0]["run_id"])
    model = _load_model(Path(run_dir), rows, catalog, adapter_source, check)
    if model is None:
        return check
    device = torch.device("cpu")
    first, preset = rows[0], rows[0]["preset"]
    try:
        batch = int(json.loads(first["hparams_json"] or "{}").get("eval_batch_size", 64))
    except (ValueError, TypeError, AttributeError):
        batch = 64
    batch = max(1, min(batch, 256))
    name = f"{run_dir}: run {check.run_id}"
    valid = task_scores(evaluate_cells(model, load_cells(catalog.dataset(first["train_task"], preset), "valid"),
                                       device, batch))["query_accuracy"]
    for row in rows:
        if not _close(row["valid_query_accuracy"], valid):
            check.problems.append(f"{name}: valid_query_accuracy reported {row['valid_query_accuracy']}, "
                                  f"re-evaluated {valid:.4f}")
            break
    for test in dict.fromkeys(r["test_task"] for r in rows):
        cells = load_cells(catalog.dataset(test, preset), "test")
        scores = evaluate_cells(model, cells, device, batch)
        by_cell = {(s.seq_len, s.num_kv_pairs): s for s in scores}
        mine = [r for r in rows if r["test_task"] == test]
        for row in mine:
            if row["slice"] == "overall":
                counts = {"num_examples": sum(s.num_examples for s in scores),
                          "num_queries": sum(s.num_queries for s in scores)}
                _compare(f"{name} test {test}", row, task_scores(scores), counts,
                         merged_block_counts(scores), check.problems)
            else:
                s = by_cell.get((row["seq_len"], row["num_kv_pairs"]))
                where = f"{name} test {test} cell ({row['seq_len']}, {row['num_kv_pairs']})"
                if s is None:
                    check.problems.append(f"{where}: not a cell of the current task")
                    continue
                _compare(where, row, {"query_accuracy": s.query_accuracy, "token_accuracy": s.token_accuracy,
                                      "example_exact_match": s.example_exact_match},
                         {"num_examples": s.num_examples, "num_queries": s.num_queries}, s.block_counts,
                         check.problems)
        if len(scores) != len([r for r in mine if r["slice"] == "cell"]):
            check.problems.append(f"{name} test {test}: {len(scores)} grid cells re-evaluated, "
                                  f"{len([r for r in mine if r['slice'] == 'cell'])} reported")
    return check


def verify_submission(sub_dir: Path, catalog: TaskCatalog) -> list[RunCheck]:
    """One ``RunCheck`` per reported run of the submission at ``sub_dir``."""
    from mqarbench.leaderboard.validate import load_rows

    sub_dir = Path(sub_dir)
    meta = load_metadata(sub_dir / METADATA_FILE)
    files, problems = load_rows(sub_dir)
    if problems:
        raise UserError(problems[0])
    rows = [r for file_rows in files.values() for r in file_rows]
    run_dirs = {rs[0]["run_id"]: f.parent for f, rs in files.items() if rs}
    table = pa.Table.from_pylist(rows)
    checks = []
    for run_id in reported_run_ids(table):
        run_rows = [r for r in rows if r["run_id"] == run_id]
        checks.append(verify_run(run_dirs[run_id], run_rows, catalog, meta.adapter_source))
    return checks


def stamp_path(verified_dir: Path, sub_dir: Path) -> Path:
    return Path(verified_dir) / f"{Path(sub_dir).name}.json"


def write_stamp(verified_dir: Path, sub_dir: Path, checks: list[RunCheck]) -> Path:
    """Record which runs passed, by the digest of the files that passed."""
    runs = {}
    for c in checks:
        run_dir = Path(sub_dir) / "runs" / c.run_id
        runs[c.run_id] = {"ok": c.ok, "fingerprint": run_fingerprint(run_dir) if run_dir.is_dir() else None}
    path = stamp_path(verified_dir, sub_dir)
    write_json_atomic(path, {"submission": Path(sub_dir).name, "runs": runs})
    return path


def verified_runs(verified_dir: Path | None, sub_dir: Path) -> set[str]:
    """Runs of ``sub_dir`` whose passing stamp still matches their files."""
    if verified_dir is None:
        return set()
    try:
        stamp = json.loads(stamp_path(verified_dir, sub_dir).read_text())
    except (OSError, ValueError):
        return set()
    out = set()
    for run_id, info in stamp.get("runs", {}).items():
        run_dir = Path(sub_dir) / "runs" / run_id
        if info.get("ok") and run_dir.is_dir() and info.get("fingerprint") == run_fingerprint(run_dir):
            out.add(run_id)
    return out
