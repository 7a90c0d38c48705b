"""benchmarks/board_budget.py: GPU time from pack shares, and the fewest epochs meeting the targets."""

from __future__ import annotations

import json
import subprocess
import sys

from bench_scripts import BENCHMARKS, load_script

TASKS = ("standard", "last", "shuffle", "k1v1", "k1v2", "k2v2", "k4v8-shuffle")


def write_run(board, model, task, lr, seed, valid, wall=120.0, pack=4):
    run = board / f"baseline-{model}-small" / "runs" / f"{model}-{task}-{lr}-{seed}"
    run.mkdir(parents=True)
    info = {"model": model, "train_task": task, "hparams": {"lr": lr}, "seed": seed, "pack_size": pack,
            "wall_time_s": wall, "history": [{"epoch": i, "valid_query_accuracy": v} for i, v in enumerate(valid)]}
    (run / "run.json").write_text(json.dumps(info))


def small_board(tmp_path):
    board = tmp_path / "submissions"
    for seed in (0, 1):
        for task in TASKS:
            write_run(board, "pythia", task, 1e-3, seed, [10, 50, 96, 97])
            write_run(board, "pythia", task, 3e-3, seed, [5, 20, 30, 40])  # never chosen
        # seed 1 reaches 90 only at its third epoch, and only at lr 3e-3
        write_run(board, "mamba", "standard", 1e-3, seed, [0, 91, 92, 93] if seed == 0 else [0, 10, 20, 30])
        write_run(board, "mamba", "standard", 3e-3, seed, [0, 5, 95, 95] if seed == 1 else [0, 1, 2, 3])
    write_run(board, "hyena", "standard", 1e-3, 0, [1, 2], wall=60.0, pack=1)  # early-stopped after 2 epochs
    return board


def test_targets_need_every_seed_at_its_chosen_rate(tmp_path):
    budget = load_script("board_budget")
    runs = budget.load_runs(small_board(tmp_path))
    assert budget.targets_met(runs, 2) == (False, [f"pythia/{t} 50.0" for t in TASKS] + ["mamba/standard 10.0"])
    assert budget.targets_met(runs, 3) == (True, [])
    assert budget.selected_valid(runs, "mamba", "standard", 3) == {0: 92, 1: 95}


def test_gpu_time_is_each_runs_share_of_its_pack_up_to_the_epochs_it_ran(tmp_path):
    budget = load_script("board_budget")
    assert len(budget.load_runs(small_board(tmp_path), tasks={"k1v1"})) == 4  # pythia's, 2 seeds x 2 lrs
    runs = budget.load_runs(tmp_path / "submissions", {"hyena", "mamba"})
    hyena = next(r for r in runs if r.model == "hyena")
    assert hyena.epoch_s == 30.0 and hyena.gpu_s(1) == 30.0 and hyena.gpu_s(4) == 60.0
    mamba = [r for r in runs if r.model == "mamba"]
    assert len(mamba) == 4 and {r.gpu_s(4) for r in mamba} == {30.0}  # 120 s / pack 4


def test_command_line_prints_the_fewest_epochs_and_refuses_an_empty_board(tmp_path):
    board = small_board(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, str(BENCHMARKS / "board_budget.py"), "--board", str(board), *a],  # noqa: E731
                                    capture_output=True, text=True)
    done = run("--budget-min", "2")
    assert done.returncode == 0, done.stderr
    # 28 pythia + 4 mamba runs at 120 s / pack 4 / 4 epochs = 7.5 s an epoch x 3, hyena 2 x 30 s: 780 s
    assert "Fewest epochs meeting the in-domain targets: 3; the board then takes about 13.0 GPU min (6.5x" in done.stdout
    refused = run("--models", "nope")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].endswith("no run.json under */runs/ of --models nope")
