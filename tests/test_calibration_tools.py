"""The calibration harness of `small` (benchmarks/calibration): candidate task copies and the table."""

from __future__ import annotations

import json
import subprocess
import sys

from mqarbench.paths import REPO_ROOT

CAL = REPO_ROOT / "benchmarks" / "calibration"


def test_candidate_copy_changes_only_small_training_counts(tmp_path, monkeypatch):
    out = tmp_path / "cal"
    subprocess.run([sys.executable, str(CAL / "make_tasks.py"), "--out", str(out), "--per-cell", "5000",
                    "--train", "k2v2", "standard"], check=True, capture_output=True)
    monkeypatch.setenv("MQARBENCH_TASKS_DIR", str(out))
    from mqarbench.data import load_suite, load_task, resolve

    small = resolve(load_task("k2v2"), "small")
    assert set(small.counts["train"]) == {5000} and set(small.counts["test"]) == {100}
    assert set(resolve(load_task("k2v2"), "tiny").counts["train"]) != {5000}  # other presets kept
    suite = load_suite("calib")
    assert [(e.train, e.test) for e in suite.experiments] == [("k2v2", "k2v2"), ("standard", "standard")]


def test_variants_change_only_their_small_row():
    sys.path.insert(0, str(CAL))
    try:
        import variants
    finally:
        sys.path.remove(str(CAL))
    from baselines.pythia import Pythia

    assert variants.Pythia4L.name == "pythia_4l" and variants.Pythia4L().fields("small")["n_layers"] == 4
    assert variants.Pythia4L().fields("tiny") == Pythia().fields("tiny")
    assert variants.Mamba2LD256().fields("small")["d_model"] == 256


def test_summary_lists_finished_runs_with_their_curve(tmp_path):
    def run(name, trained, history):
        folder = tmp_path / "cand" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(dict(
            model="pythia", params=10, train_task="k2v2", seed=0, trained=trained, history=history,
            hparams=dict(batch_size=64, lr=1e-3, epochs=len(history)), valid_query_accuracy=97.5,
            best_epoch=2, timing=dict(train_s=12.0), train_tokens_per_s=1000.0, pack_size=3)))

    run("a", True, [{"epoch": e, "valid_query_accuracy": 10.0 * e} for e in range(9)])
    run("b", False, [])  # still training: left out
    text = subprocess.run([sys.executable, str(CAL / "summarize.py"), str(tmp_path)], check=True,
                          capture_output=True, text=True).stdout
    rows = [line for line in text.splitlines() if line.startswith("| cand ")]
    assert len(rows) == 1 and "| 97.5 | 3 |" in rows[0] and "0@1 20@3 40@5 60@7 80@9" in rows[0]


def test_candidate_copy_never_replaces_a_directory_it_did_not_write(tmp_path):
    keep = tmp_path / "work"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    cmd = [sys.executable, str(CAL / "make_tasks.py"), "--per-cell", "10", "--train", "k2v2", "--out"]
    refused = subprocess.run(cmd + [str(keep)], capture_output=True, text=True)
    assert refused.returncode != 0 and (keep / "notes.txt").read_text() == "mine"
    assert refused.stderr.strip().startswith("error: --out") and len(refused.stderr.strip().splitlines()) == 1
    again = tmp_path / "cal"
    for _ in range(2):  # its own copy is replaced in place
        subprocess.run(cmd + [str(again)], check=True, capture_output=True)
    assert (again / "presets.yaml").is_file()
