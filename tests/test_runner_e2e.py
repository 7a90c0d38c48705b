"""`mqarbench run / train / eval` end to end on the CPU, on shrunken tiny tasks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mqarbench.cli import main
from mqarbench.results.store import collect_results, read_results
from test_runner_fixtures import KILL_MARKER_ENV, STANDIN, cli_env, mini_env, mini_tasks  # noqa: F401


def run_dirs(out):
    return sorted(p for p in (out / "runs").iterdir() if p.is_dir())


def test_run_positional_mamba_end_to_end(mini_env, capsys):
    args = ["run", "--model", "mamba", "--suite", "positional", "--preset", "tiny", "--epochs", "1",
            "--out", "out", "--data-dir", "data"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "train \\ test" in printed and "leaderboard:" in printed
    assert (mini_env / "out" / "site" / "index.html").is_file()
    runs = run_dirs(mini_env / "out")
    assert len(runs) == 3  # one per train task of the positional suite (one lr, one seed at tiny)
    trains = set()
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        trains.add(info["train_task"])
        assert info["trained"] and info["model"] == "mamba" and len(info["history"]) == 1
        assert info["best_epoch"] == 0 and info["train_tokens_per_s"] > 0
        assert info["kernel_paths"]["selective_scan"].startswith("reference")
        assert info["kernel_paths"]["cross_entropy"] == "torch.cross_entropy"  # the loss's path too
        assert info["torch_version"] == torch.__version__
        rows = read_results(run / "results.parquet").to_pylist()
        assert {r["test_task"] for r in rows} == {"standard", "last", "shuffle"}
        for test in ("standard", "last", "shuffle"):
            overall = [r for r in rows if r["test_task"] == test and r["slice"] == "overall"]
            cells = [r for r in rows if r["test_task"] == test and r["slice"] == "cell"]
            assert len(overall) == 1 and len(cells) == 2  # (64, 2), (64, 4)
            assert overall[0]["query_accuracy"] == pytest.approx(np.mean([c["query_accuracy"] for c in cells]))
            assert overall[0]["num_queries"] == sum(c["num_queries"] for c in cells) > 0
            assert overall[0]["valid_query_accuracy"] == info["valid_query_accuracy"]
            with np.load(run / "attention" / f"{test}.npz", allow_pickle=False) as f:
                assert f["maps"].dtype == np.float16 and f["maps"].shape == (2, 64, 64)
                assert f["input_ids"].shape == f["labels"].shape == (64,)
        assert json.loads((run / "results.json").read_text())[0]["run_id"] == run.name
    assert trains == {"standard", "last", "shuffle"}

    before = {r: (r / "best.pt").stat().st_mtime_ns for r in runs}
    assert main(args + ["--no-site"]) == 0
    assert "3 already finished" in capsys.readouterr().err
    assert before == {r: (r / "best.pt").stat().st_mtime_ns for r in runs}


def _train(out, env, *extra):
    cmd = [sys.executable, "-m", "mqarbench", "train", "--model", STANDIN, "--task", "standard",
           "--preset", "tiny", "--epochs", "4", "--out", str(out), "--data-dir", str(out.parent / "data"), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _weights(run):
    return torch.load(run / "best.pt", weights_only=True)["model"]


def test_resume_after_sigkill_equals_uninterrupted_run(mini_env, mini_tasks, tmp_path):
    env = cli_env(mini_tasks)
    assert _train(tmp_path / "clean", env).returncode == 0
    killed = _train(tmp_path / "killed", {**env, KILL_MARKER_ENV: str(tmp_path / "marker")})
    assert killed.returncode == -9, killed.stderr  # SIGKILL on the fifth step: epoch 2 of 4
    [run] = run_dirs(tmp_path / "killed")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["state"]["epoch"] == 1
    resumed = _train(tmp_path / "killed", env)
    assert resumed.returncode == 0, resumed.stderr
    [clean] = run_dirs(tmp_path / "clean")
    assert clean.name == run.name
    a, b = (json.loads((d / "run.json").read_text()) for d in (clean, run))
    assert a["history"] == b["history"] and a["best_epoch"] == b["best_epoch"] and b["attempts"] == 2
    wa, wb = _weights(clean), _weights(run)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    for d in (clean, run):
        assert main(["eval", str(d), "--test", "standard,last", "--data-dir", str(tmp_path / "data")]) == 0
    ra, rb = (read_results(d / "results.parquet").to_pylist() for d in (clean, run))
    key = ("test_task", "slice", "seq_len", "num_kv_pairs", "query_accuracy", "token_accuracy")
    assert [[r[k] for k in key] for r in ra] == [[r[k] for k in key] for r in rb]


def test_corrupt_files_are_detected_and_redone(mini_env, capsys):
    args = ["train", "--model", STANDIN, "--task", "standard", "--preset", "tiny", "--epochs", "2",
            "--out", "out", "--data-dir", "data"]
    assert main(args) == 0
    [run] = run_dirs(mini_env / "out")
    good = _weights(run)
    history = json.loads((run / "run.json").read_text())["history"]
    raw = bytearray((run / "best.pt").read_bytes())
    raw[-20] ^= 0xFF
    (run / "best.pt").write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["eval", str(run), "--test", "standard", "--data-dir", "data"]) == 0  # needs best.pt
    assert "sha256 differs" in capsys.readouterr().err
    assert json.loads((run / "run.json").read_text())["history"] == history
    assert all(torch.equal(good[k], v) for k, v in _weights(run).items())
    first = read_results(run / "results.parquet").to_pylist()

    (run / "results.parquet").write_bytes(b"not parquet")
    assert main(["eval", str(run), "--test", "standard", "--data-dir", "data"]) == 0
    again = read_results(run / "results.parquet").to_pylist()
    assert [r["query_accuracy"] for r in again] == [r["query_accuracy"] for r in first]


def test_trained_run_is_reused_and_only_missing_tests_evaluated(mini_env, capsys):
    assert main(["train", "--model", STANDIN, "--task", "standard", "--preset", "tiny", "--epochs", "1",
                 "--out", "out", "--data-dir", "data"]) == 0
    [run] = run_dirs(mini_env / "out")
    stamp = (run / "best.pt").stat().st_mtime_ns
    assert main(["run", "--model", STANDIN, "--suite", "robustness", "--preset", "tiny", "--epochs", "1",
                 "--out", "out", "--data-dir", "data", "--no-site"]) == 0
    assert "Fig. 6a" in capsys.readouterr().out
    assert (run / "best.pt").stat().st_mtime_ns == stamp  # not retrained
    rows = read_results(run / "results.parquet").to_pylist()
    overall = [r for r in rows if r["slice"] == "overall"]
    assert [r["test_task"] for r in overall] == ["position-robustness"]
    shares = json.loads(overall[0]["block_shares_json"])
    assert len(shares) == 4 and all(0 <= s <= 1 for s in shares)
    assert sum(shares) == pytest.approx(1.0) or sum(shares) == 0


def test_worker_processes_give_the_sequential_results(mini_env):
    common = ["run", "--model", STANDIN, "--suite", "robustness", "--preset", "tiny", "--epochs", "2",
              "--data-dir", "data", "--no-site", "--lr", "3e-3", "1e-2"]
    assert main([*common, "--out", "seq"]) == 0
    assert main([*common, "--out", "par", "--workers-per-gpu", "2"]) == 0
    key = ("run_id", "test_task", "slice", "seq_len", "num_kv_pairs", "query_accuracy", "block_shares_json")
    a, b = ([[r[k] for k in key] for r in collect_results(mini_env / d).to_pylist()] for d in ("seq", "par"))
    assert len(a) == 6 * 3 and sorted(a) == sorted(b)  # 6 runs x (overall + 2 cells)


def test_user_errors_are_one_line(mini_env, capsys, monkeypatch):
    assert main(["run", "--model", "mamba", "--suite", "nope", "--preset", "tiny"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["run", "--model", STANDIN, "--suite", "robustness", "--preset", "tiny", "--epochs", "1",
                 "--executor", "ray", "--out", "out", "--data-dir", "data", "--no-site"]) == 2
    assert 'pip install "mqarbench[distributed]"' in capsys.readouterr().err
    assert main(["train", "--model", STANDIN, "--task", "position-robustness", "--preset", "tiny"]) == 2
    assert "test only" in capsys.readouterr().err
    assert main(["eval", "nowhere", "--test", "standard"]) == 2
    assert "no finished training run" in capsys.readouterr().err


def test_reference_kernels_on_cuda_are_refused_unless_allowed(mini_env, capsys, monkeypatch):
    import mqarbench.kernels

    # what a CUDA machine without mamba_ssm reports
    monkeypatch.setattr(mqarbench.kernels, "slow_paths",
                        lambda module: ["selective_scan: mamba_ssm not importable (pip install mamba-ssm)"])
    args = ["train", "--model", STANDIN, "--task", "standard", "--preset", "tiny", "--epochs", "1",
            "--out", "out", "--data-dir", "data"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "selective_scan: mamba_ssm not importable" in err and "--allow-slow-kernels" in err
    assert not list((mini_env / "out" / "runs").glob("*/best.pt"))
    assert main([*args, "--allow-slow-kernels"]) == 0


def test_fla_refusal_on_cuda_names_its_own_fix(mini_env, capsys, monkeypatch):
    """Where fla is installed but refuses a kernel, the fix is a Triton upgrade, not an install."""
    import mqarbench.kernels
    from mqarbench.kernels.delta_rule import FLA_GATED_REFUSED

    monkeypatch.setattr(mqarbench.kernels, "slow_paths", lambda module: [f"gated_delta_rule: {FLA_GATED_REFUSED}"])
    assert main(["train", "--model", STANDIN, "--task", "standard", "--preset", "tiny", "--epochs", "1",
                 "--out", "out", "--data-dir", "data"]) == 2
    err = capsys.readouterr().err
    assert "triton>=3.7.1" in err and "--allow-slow-kernels" in err
    assert "mqarbench[cuda]" not in err


def test_training_stops_once_validation_is_perfect(mini_env, monkeypatch):
    import mqarbench.runner.train as train

    monkeypatch.setattr(train, "task_scores", lambda scores: {"query_accuracy": 100.0})
    args = ["train", "--model", STANDIN, "--task", "standard", "--preset", "tiny", "--epochs", "4",
            "--out", "out", "--data-dir", "data"]
    assert main(args) == 0
    (run,) = run_dirs(mini_env / "out")
    info = json.loads((run / "run.json").read_text())
    assert [h["epoch"] for h in info["history"]] == [0] and info["best_epoch"] == 0


def test_parallel_runs_start_longest_first(mini_env, monkeypatch):
    import mqarbench.runner.executors as executors
    from mqarbench.runner.hparams import sweep
    from mqarbench.runner.orchestrate import _execute
    from mqarbench.runner.plan import plan_runs, suite_datasets, train_tokens
    from pathlib import Path
    from rich.console import Console

    datasets = suite_datasets("main", "tiny", Path("data"))
    grid = sweep("tiny", epochs=1) + sweep("tiny", epochs=3)  # two costs per train task
    specs = plan_runs([STANDIN], "main", "tiny", datasets, grid, [0], Path("out"))
    for spec in specs:
        table = spec.train.open().load("train")
        assert train_tokens(spec) == spec.hparams.epochs * sum(table.column("seq_len").to_pylist())
    seen = []
    monkeypatch.setattr(executors, "run_local", lambda todo, done, on_step=None, workers=1: seen.extend(todo))
    _execute(specs, "local", None, 2, Console(quiet=True))
    costs = [train_tokens(s) for s in seen]
    assert sorted(seen, key=lambda s: s.run_id) == sorted(specs, key=lambda s: s.run_id)
    assert costs == sorted(costs, reverse=True) and len(set(costs)) > 1


def test_only_runs_the_named_runs_of_the_matrix(mini_env, capsys):
    args = ["run", "--model", STANDIN, "--suite", "positional", "--preset", "tiny", "--epochs", "1",
            "--out", "out", "--data-dir", "data", "--no-site"]
    assert main(args + ["--only", "0000"]) == 2  # a user error
    assert "--only 0000: no run of this matrix" in capsys.readouterr().err
    from mqarbench.runner.hparams import sweep
    from mqarbench.runner.plan import plan_runs, suite_datasets
    from pathlib import Path

    specs = plan_runs([STANDIN], "positional", "tiny", suite_datasets("positional", "tiny", Path("data")),
                      sweep("tiny", epochs=1), [0], Path("out"))
    assert main(args + ["--only", specs[1].run_id[:8]]) == 0
    assert [p.name for p in run_dirs(mini_env / "out")] == [specs[1].run_id]


def test_train_runs_only_the_runs_trained_on_those_tasks(mini_env, capsys):
    args = ["run", "--model", STANDIN, "--suite", "positional", "--preset", "tiny", "--epochs", "1",
            "--out", "out", "--data-dir", "data", "--no-site"]
    assert main(args + ["--train", "k2v2"]) == 2  # not a train task of this suite
    err = capsys.readouterr().err
    assert "--train k2v2: suite 'positional'" in err and "standard, last, shuffle" in err
    assert not (mini_env / "out" / "runs").exists() or not run_dirs(mini_env / "out")
    assert main(args + ["--train", "last"]) == 0
    trained = [json.loads((p / "run.json").read_text())["train_task"] for p in run_dirs(mini_env / "out")]
    assert trained == ["last"]


@pytest.mark.parametrize("variable,value,model", [("MQARBENCH_RMS_NORM", "apex", "mamba"),
                                                  ("MQARBENCH_CROSS_ENTROPY", "fused", "pythia")])
def test_a_bad_kernel_variable_is_one_line_and_leaves_no_run(mini_env, capsys, monkeypatch, variable, value, model):
    """An unknown kernel path is the variable's own error (not a model's forward failing), and
    no run is recorded (the run's lock file alone is left, which the next run takes)."""
    monkeypatch.setenv(variable, value)
    args = ["run", "--model", model, "--suite", "positional", "--preset", "tiny", "--epochs", "1",
            "--out", "out", "--data-dir", "data", "--no-site"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {variable}={value!r}: use one of auto, ")
    assert list((mini_env / "out").rglob("run.json")) == []
