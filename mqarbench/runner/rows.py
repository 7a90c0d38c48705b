"""Result rows (the schema of ``mqarbench.results``) of one run on one test task."""

from __future__ import annotations

import json

from mqarbench.results.schema import SCHEMA_VERSION
from mqarbench.runner.metrics import CellScore, block_shares, merged_block_counts, task_scores
from mqarbench.runner.plan import TaskRef


def result_rows(record: dict, test: TaskRef, cells: list[CellScore]) -> list[dict]:
    """One ``overall`` row (unweighted mean over cells) and one ``cell`` row per grid cell."""
    hp = record["hparams"]
    common = {
        "schema_version": SCHEMA_VERSION, "run_id": record["run_id"], "model": record["model"],
        "adapter_version": record["adapter_version"], "model_family": record["model_family"],
        "params": record["params"], "state_size": record["state_size"],
        "model_config_json": json.dumps(record["model_config"], sort_keys=True),
        "preset": record["preset"], "train_task": record["train_task"],
        "train_task_version": record["train_task_version"], "train_task_hash": record["train_task_hash"],
        "test_task": test.task, "test_task_version": test.version, "test_task_hash": test.content_hash,
        "lr": hp["lr"], "seed": record["seed"], "epochs": hp["epochs"], "batch_size": hp["batch_size"],
        "hparams_json": json.dumps(hp, sort_keys=True),
        "best_epoch": record["best_epoch"], "valid_query_accuracy": record["valid_query_accuracy"],
        "kernel_paths_json": json.dumps(record["kernel_paths"], sort_keys=True),
        "torch_version": record["torch_version"], "cuda_version": record["cuda_version"],
        "mqarbench_version": record["mqarbench_version"], "gpu_name": record["gpu_name"],
        "wall_time_s": record["wall_time_s"], "train_tokens_per_s": record.get("train_tokens_per_s"),
        "peak_memory_mb": record["peak_memory_mb"], "created_at": record["created_at"],
    }

    def shares(counts: list[int] | None) -> str | None:
        return None if counts is None else json.dumps(block_shares(counts))

    overall = {**common, "slice": "overall", "seq_len": None, "num_kv_pairs": None,
               **task_scores(cells), "num_examples": sum(c.num_examples for c in cells),
               "num_queries": sum(c.num_queries for c in cells),
               "block_shares_json": shares(merged_block_counts(cells))}
    return [overall] + [
        {**common, "slice": "cell", "seq_len": c.seq_len, "num_kv_pairs": c.num_kv_pairs,
         "query_accuracy": c.query_accuracy, "token_accuracy": c.token_accuracy,
         "example_exact_match": c.example_exact_match, "num_examples": c.num_examples,
         "num_queries": c.num_queries, "block_shares_json": shares(c.block_counts)}
        for c in cells]
