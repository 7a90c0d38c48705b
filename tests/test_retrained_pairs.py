"""benchmarks/retrained_pairs.py: two trainings of one run id, compared test by test."""

import json
from pathlib import Path

import pyarrow as pa
import pytest

from bench_scripts import load_script
from mqarbench.results.schema import RESULTS_SCHEMA
from mqarbench.results.store import write_results

pairs_mod = load_script("retrained_pairs")


def fake_run(runs: Path, run_id: str, valid: float, scores: dict[str, float], history=None,
             weights: str | None = None) -> None:
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"model": "mamba", "train_task": "k2v2", "hparams": {"lr": 3e-3},
                                                  "seed": 1, "valid_query_accuracy": valid, "best_epoch": 20,
                                                  "history": history or []}))
    if weights is not None:
        (run_dir / "weights.safetensors.sha256").write_text(weights + "\n")
    n = len(scores) + 1  # and a non-overall row that must be ignored
    cols = {f.name: pa.nulls(n, f.type) for f in RESULTS_SCHEMA}
    cols["test_task"] = pa.array([*scores, "k2v2"])
    cols["slice"] = pa.array(["overall"] * len(scores) + ["block-1"])
    cols["query_accuracy"] = pa.array([*scores.values(), 99.0])
    write_results(pa.table(cols), run_dir / "results.parquet")


def test_pairs_compare_only_shared_ids_and_tests(tmp_path):
    before, after = tmp_path / "leaderboard", tmp_path / "out"
    fake_run(before / "submissions" / "baseline-mamba-small" / "runs", "aaaa", 80.0, {"k2v2": 80.0, "k1v1": 10.0})
    fake_run(after / "runs", "aaaa", 90.0, {"k2v2": 88.0, "k1v1": 4.0, "k2v2-robustness": 50.0})
    fake_run(after / "runs", "bbbb", 50.0, {"k2v2": 50.0})  # not on the board before: no pair
    pairs = pairs_mod.find_pairs(before, [after])
    assert len(pairs) == 1 and pairs[0].valid == (80.0, 90.0)
    assert pairs[0].diffs == pytest.approx({"k2v2": 8.0, "k1v1": -6.0})  # k2v2-robustness only after: not compared
    row = pairs_mod.summary(pairs)[2]
    assert row == "| mamba | 1 | 0 | 2 | 7.0 | 8.0 | 10.0 | 10.0 | 2 |"
    assert pairs_mod.largest(pairs, 3)[2].endswith("| 80.0 -> 90.0 | 20 -> 20 | k2v2 +8.0 |")


def test_identical_needs_the_same_history_and_weights_file(tmp_path):
    """Two --out folders (runs/ directly under each): a pair is identical only when every epoch and
    the weights file's digest agree; no digest on either side is not identical."""
    history = [{"epoch": 0, "train_loss": 7.4448, "valid_query_accuracy": 0.0}]
    other = [{"epoch": 0, "train_loss": 7.4449, "valid_query_accuracy": 0.0}]
    a, b = tmp_path / "a", tmp_path / "b"
    for out, hist, digest in ((a, history, "d1"), (b, history, "d1")):
        fake_run(out / "runs", "same", 50.0, {"k2v2": 50.0}, hist, digest)
    fake_run(a / "runs", "moved", 50.0, {"k2v2": 50.0}, history, "d2")
    fake_run(b / "runs", "moved", 50.0, {"k2v2": 50.0}, other, "d2")
    fake_run(a / "runs", "reweighed", 50.0, {"k2v2": 50.0}, history, "d3")
    fake_run(b / "runs", "reweighed", 50.0, {"k2v2": 50.0}, history, "d4")
    fake_run(a / "runs", "unknown", 50.0, {"k2v2": 50.0}, history)
    fake_run(b / "runs", "unknown", 50.0, {"k2v2": 50.0}, history)
    pairs = pairs_mod.find_pairs(a, [b])
    assert sorted(p.identical for p in pairs) == [False, False, False, True]

    assert pairs_mod.summary(pairs)[2].startswith("| mamba | 4 | 1 | 4 | 0.0 |")


def test_no_shared_id_is_one_line_error(tmp_path, monkeypatch, capsys):
    fake_run(tmp_path / "out" / "runs", "cccc", 1.0, {"k2v2": 1.0})
    monkeypatch.setattr("sys.argv", ["retrained_pairs", "--before", str(tmp_path / "none"), str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="no run under .* has an id under"):
        pairs_mod.main()
