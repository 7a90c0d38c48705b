"""The results schema: one row per (run x test task x slice), shared by runner and leaderboard.

A slice is ``overall`` (the task score: unweighted mean over grid cells) or ``cell`` (one
(seq_len, num_kv_pairs) grid cell). Bump ``SCHEMA_VERSION`` on any change to the columns.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

RESULTS_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("run_id", pa.string()),
        # the model
        ("model", pa.string()),  # adapter name, e.g. "global_mamba"
        ("adapter_version", pa.string()),
        ("model_family", pa.string()),
        ("params", pa.int64()),
        ("state_size", pa.int64()),  # recurrent state in numbers per sequence (0 for attention)
        ("model_config_json", pa.string()),
        ("preset", pa.string()),  # tiny | small | paper
        # data
        ("train_task", pa.string()),
        ("train_task_version", pa.int32()),
        ("train_task_hash", pa.string()),
        ("test_task", pa.string()),
        ("test_task_version", pa.int32()),
        ("test_task_hash", pa.string()),
        # hyper-parameters
        ("lr", pa.float64()),
        ("seed", pa.int64()),
        ("epochs", pa.int32()),
        ("batch_size", pa.int32()),
        ("hparams_json", pa.string()),
        # slice
        ("slice", pa.string()),  # "overall" | "cell"
        ("seq_len", pa.int32()),  # null on the overall row
        ("num_kv_pairs", pa.int32()),  # null on the overall row
        # metrics (percent, 0-100)
        ("query_accuracy", pa.float64()),  # primary
        ("token_accuracy", pa.float64()),
        ("example_exact_match", pa.float64()),
        ("num_examples", pa.int64()),
        ("num_queries", pa.int64()),
        ("block_shares_json", pa.string()),  # position-robustness: share of answers per block, else null
        ("best_epoch", pa.int32()),
        ("valid_query_accuracy", pa.float64()),
        # how it ran
        ("kernel_paths_json", pa.string()),  # {"selective_scan": "mamba_ssm", ...}
        ("torch_version", pa.string()),
        ("cuda_version", pa.string()),
        ("mqarbench_version", pa.string()),
        ("gpu_name", pa.string()),
        ("wall_time_s", pa.float64()),
        ("train_tokens_per_s", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("created_at", pa.string()),  # ISO 8601, UTC
    ],
    metadata={"mqarbench.results.schema_version": str(SCHEMA_VERSION)},
)

COLUMNS = tuple(RESULTS_SCHEMA.names)
