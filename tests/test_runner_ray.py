"""The Ray executor on a real local cluster (2 CPU workers): a small matrix, a killed worker, same results."""

from __future__ import annotations

import pytest
import torch

from mqarbench.cli import main
from mqarbench.results.store import collect_results
from test_runner_fixtures import KILL_MARKER_ENV, STANDIN, mini_env, mini_tasks  # noqa: F401

pytest.importorskip("ray")

KEY = ("run_id", "test_task", "slice", "seq_len", "num_kv_pairs")
METRICS = ("query_accuracy", "token_accuracy", "example_exact_match", "valid_query_accuracy", "best_epoch")


def _results(out):
    rows = collect_results(out).to_pylist()
    return {tuple(r[k] for k in KEY): tuple(r[m] for m in METRICS) for r in rows}


def test_ray_matrix_survives_a_killed_worker_and_matches_local(mini_env, monkeypatch, capsys):
    common = ["--model", STANDIN, "--suite", "positional", "--preset", "tiny", "--epochs", "3",
              "--lr", "3e-3", "1e-2", "--data-dir", "data", "--no-site"]
    # a Ray task with num_cpus=1 runs torch on one thread; so does the local run, so both sum in
    # the same order and the weights must agree bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", *common, "--out", "local"]) == 0
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv(KILL_MARKER_ENV, str(mini_env / "marker"))
    # a kernel variable is sent to the workers as a runtime_env (the CPU's path either way)
    monkeypatch.setenv("MQARBENCH_LONG_CONV", "fft")
    assert main(["run", *common, "--out", "ray", "--executor", "ray"]) == 0
    assert (mini_env / "marker").exists()  # a worker really died mid-training
    local, ray = _results(mini_env / "local"), _results(mini_env / "ray")
    assert len(local) == 6 * 3 * 3  # 6 runs x 3 tests x (overall + 2 cells)
    assert ray == local
    for run in (mini_env / "local" / "runs").iterdir():
        a = torch.load(run / "best.pt", weights_only=True)["model"]
        b = torch.load(mini_env / "ray" / "runs" / run.name / "best.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), run.name
    assert "Table 1" in capsys.readouterr().out
