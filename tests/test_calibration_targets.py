"""The calibration targets in docs/reproduction.md, judged on hand-made scores."""

from __future__ import annotations

import pyarrow as pa

from mqarbench.analysis import calibration as cal
from mqarbench.analysis import paper_numbers as paper
from mqarbench.data import load_suite
from mqarbench.leaderboard.boards import BoardEntry, Score


def s(*values: float) -> Score:
    return Score(tuple(values))


def test_the_targets_cover_every_training_task_of_the_suite_all():
    assert set(cal.TRAIN_TASKS) == set(load_suite("all").train_tasks())


def test_floor_counts_the_worst_seed_and_names_each_gap():
    tasks = ["standard", "k2v2"]
    assert cal.judge_floor("t", {"standard": s(99, 96), "k2v2": s(95, 97)}, tasks, 95).verdict == "met on 2 of 2"
    missed = cal.judge_floor("t", {"standard": s(99, 90, 99), "k2v2": s(97)}, tasks, 95)
    assert missed.verdict == "missed on 1 of 2 (standard by 5.00)"  # mean 96 is above, one seed is not
    assert "standard 90.00 (n=3)" in missed.figure
    absent = cal.judge_floor("t", {"k2v2": s(97)}, tasks, 95)
    assert absent.verdict == "not measured: standard"
    assert cal.judge_floor("t", {}, tasks, 95).figure == "-"


def test_spread_is_met_missed_or_not_measured():
    tight = {cell: s(90, 91, 92) for cell in paper.TABLE3_COLUMNS.values()}
    assert cal.judge_spread({"pythia": tight, "mamba": tight}).verdict == "met"
    wide = {**tight, paper.TABLE3_COLUMNS["K2V2-Robustness"]: s(0, 100, 50)}
    missed = cal.judge_spread({"pythia": wide, "mamba": tight})
    assert missed.verdict == "missed on 1: pythia K2V2-Robustness 50.00"
    assert "pythia: largest 50.00 (K2V2-Robustness)" in missed.figure
    one_seed = {**tight, paper.TABLE3_COLUMNS["Shuffle"]: s(99)}
    assert cal.judge_spread({"pythia": tight, "mamba": one_seed}).verdict == \
        "not measured (under 2 seeds): mamba Shuffle"


def test_valid_score_is_one_value_per_reported_run():
    rows = pa.table({
        "slice": ["overall"] * 5 + ["cell"],
        "run_id": ["a", "a", "b", "b", "c", "a"],
        "train_task": ["standard", "standard", "standard", "standard", "k2v2", "standard"],
        "test_task": ["last", "shuffle", "last", "shuffle", "k2v2", "last"],
        "valid_query_accuracy": [98.0, 98.0, 96.0, 96.0, 50.0, 1.0],
    })
    entry = BoardEntry(entry=None, rows=rows)
    assert entry.valid_score("standard") == s(98.0, 96.0)
    assert entry.valid_score("k2v2") == s(50.0) and entry.valid_score("last") is None


def test_render_has_the_targets_and_a_row_per_model():
    valid = {"pythia": {t: s(99, 98, 97) for t in cal.TRAIN_TASKS}, "mamba": {"standard": s(95, 94, 89)}}
    scores = {m: {cell: s(90, 91, 92) for cell in paper.TABLE3_COLUMNS.values()} for m in valid}
    text = "\n".join(cal.render(valid, scores))
    assert "**met on 7 of 7**" in text and "**missed on 1 of 1 (standard by 1.00)**" in text
    assert "**met** |" in text
    assert "\n| pythia | 98.0 ± 1.0 (n=3) · min 97.0 | " in text
    assert "| mamba | 92.7 ± 3.2 (n=3) · min 89.0 | not run |" in text
