"""benchmarks/seed_spread.py (one cell over many seeds, paired across folders) and
benchmarks/path_agreement.py's settings."""

import json
import os

import pytest

from bench_scripts import load_script
from mqarbench.results.schema import RESULTS_SCHEMA
from mqarbench.results.store import to_table, write_results

spread = load_script("seed_spread")
sign_flip_p = spread.sign_flip_p


def test_sign_flip_p_counts_the_patterns_at_least_as_extreme():
    assert sign_flip_p([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)  # only all + and all -
    assert sign_flip_p([1.0, 2.0, -3.0]) == 1.0  # a zero sum: every pattern reaches it
    assert sign_flip_p([4.0, 1.0]) == pytest.approx(2 / 4)  # (+4 +1), (-4 -1)
    assert sign_flip_p([1.0] * 25) < 1e-3  # sampled above EXACT_PAIRS


def _write_run(folder, name, seed, accuracy, valid, lr=3e-3, paths=None, model="global_mamba"):
    row = {n: None for n in RESULTS_SCHEMA.names}
    row.update(model=model, adapter_version="2", preset="small", train_task="k2v2",
               train_task_hash="h", seed=seed, lr=lr, valid_query_accuracy=valid, test_task="k2v2",
               query_accuracy=accuracy, slice="overall")
    run = folder / "runs" / name
    run.mkdir(parents=True)
    write_results(to_table([row]), run / "results.parquet")
    (run / "run.json").write_text(json.dumps({"model": model, "kernel_paths": paths or {"long_conv": "fft"}}))


def test_table_pairs_seeds_with_the_first_folder_and_takes_each_seeds_best_lr(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, acc in enumerate([80.0, 60.0, 20.0]):
        _write_run(a, f"a{seed}", seed, acc, valid=acc)
    _write_run(a, "a0-low-lr", 0, 99.0, valid=1.0, lr=1e-3)  # worse on validation: not chosen
    for seed, acc in enumerate([70.0, 50.0]):
        _write_run(b, f"b{seed}", seed, acc, valid=acc, paths={"long_conv": "triton"})
    lines = spread.table([a, b], "k2v2", fail=30.0)
    row_a = next(line for line in lines if line.startswith("| a |"))
    row_b = next(line for line in lines if line.startswith("| b |"))
    assert "| 3 | 53.33 ± 30.55 (n=3) | 1 | - | - | 80.0 / 60.0 / 20.0 |" in row_a
    # paired over seeds 0 and 1: (70 - 80 + 50 - 60) / 2 = -10; both negative: p = 2/4
    assert "| -10.0 (n=2) | 0.500 | 70.0 / 50.0 / - |" in row_b
    assert "- b: long_conv=triton" in lines


def test_a_missing_test_task_names_the_folder_and_flag(tmp_path):
    _write_run(tmp_path / "a", "a0", 0, 50.0, valid=50.0)
    with pytest.raises(SystemExit, match=r"a: no results on test task 'k4v8'; check --test"):
        spread.scores(tmp_path / "a", "k4v8")


def test_path_agreement_reads_settings_and_restores_the_environment(monkeypatch):
    agree = load_script("path_agreement")
    assert agree.settings("A=1+B=x=y") == {"A": "1", "B": "x=y"}
    assert agree.settings("") == {}
    with pytest.raises(SystemExit, match="--a/--b: want VAR=VAL"):
        agree.settings("MQARBENCH_LONG_CONV")
    monkeypatch.setenv("MQARBENCH_A", "before")
    monkeypatch.delenv("MQARBENCH_B", raising=False)
    seen = agree.with_env({"MQARBENCH_A": "1", "MQARBENCH_B": "2"},
                          lambda: (os.environ["MQARBENCH_A"], os.environ["MQARBENCH_B"]))
    assert seen == ("1", "2")
    assert os.environ["MQARBENCH_A"] == "before" and "MQARBENCH_B" not in os.environ
