"""`mqarbench tasks` and `mqarbench data` as a user runs them."""

from __future__ import annotations

import re

import pytest

from mqarbench.cli import main
from mqarbench.data import list_tasks, load_suite


def test_tasks_list(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_tasks():
        assert re.search(rf"^{re.escape(name)}\s", out, re.M)
    assert re.search(r"^position-robustness\s+position_robustness\s+1 test\s+18", out, re.M)


def test_tasks_show_marks_keys_values_queries(capsys):
    assert main(["tasks", "show", "k2v2", "--cell", "64,2"]) == 0
    out = capsys.readouterr().out
    assert "k2v2 v1 (ngram)" in out and "seq_len 64, 2 pairs" in out
    assert len(re.findall(r"\bK\d+", out)) == 4 and len(re.findall(r"\bQ\d+", out)) == 4
    assert len(re.findall(r"<MASK>→\d+", out)) == 2 and "<MASK>→SEP" in out  # train split: closing SEP
    assert re.search(r"<SEP_KV>→\d+", out)


def test_tasks_show_bad_cell(capsys):
    assert main(["tasks", "show", "standard", "--cell", "64,3"]) == 2
    assert "not a cell of standard" in capsys.readouterr().err


def test_data_build_prints_dirs_and_hashes_then_reuses(tmp_path, capsys):
    assert main(["data", "build", "--suite", "robustness", "--preset", "tiny", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    tasks = list(dict.fromkeys(load_suite("robustness").train_tasks() + ["position-robustness"]))
    for name in tasks:
        assert re.search(rf"{re.escape(name)} \(tiny\) \.\.\. built in .*{name}-v1-tiny-[0-9a-f]{{12}}  sha256:", out)
    assert main(["data", "build", "--suite", "robustness", "--preset", "tiny", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("reused") == len(tasks)


def test_data_build_unknown_suite_and_preset(tmp_path, capsys):
    assert main(["data", "build", "--suite", "nope", "--data-dir", str(tmp_path)]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["data", "build", "--preset", "huge", "--data-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--preset: invalid choice: 'huge'" in capsys.readouterr().err
