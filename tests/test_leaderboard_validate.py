"""`mqarbench leaderboard validate`: a good submission passes; each bad kind fails by name."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from mqarbench.cli import main
from mqarbench.leaderboard.validate import validate_path
from mqarbench.results.store import read_results, to_table, write_results
from test_leaderboard_fixtures import catalog, write_submission  # noqa: F401


def _problems(path, catalog):
    return validate_path(path, catalog)[1]


def _edit_rows(sub, edit):
    """Rewrite every results file of a submission through ``edit(rows) -> rows``."""
    for f in sub.rglob("results.parquet"):
        write_results(to_table(edit(read_results(f).to_pylist())), f)


@pytest.fixture
def root(tmp_path, catalog):
    write_submission(tmp_path, "good", catalog, "mamba")
    return tmp_path


def test_good_submission_passes(root, catalog):
    subs, problems = validate_path(root, catalog)
    assert [s.name for s in subs] == ["good"] and problems == []
    assert _problems(root / "good", catalog) == []


def test_cli_exit_codes(root, catalog, capsys, tmp_path_factory):
    args = ["--data-dir", str(catalog.data_dir)]
    assert main(["leaderboard", "validate", str(root), *args]) == 0
    assert "1 submission(s) valid: good" in capsys.readouterr().out
    empty = tmp_path_factory.mktemp("empty")
    assert main(["leaderboard", "validate", str(empty), *args]) == 0
    assert "no submissions" in capsys.readouterr().out
    (root / "good" / "metadata.yaml").write_text("model_name: x\n")
    assert main(["leaderboard", "validate", str(root), *args]) == 1
    out = capsys.readouterr().out
    assert "metadata.yaml: field 'authors': Field required" in out


def test_metadata_unknown_field_and_bad_link(root, catalog):
    meta = yaml.safe_load((root / "good" / "metadata.yaml").read_text())
    meta.update(extra_field=1, link="javascript:alert(1)")
    (root / "good" / "metadata.yaml").write_text(yaml.safe_dump(meta))
    problems = _problems(root, catalog)
    assert any("field 'extra_field'" in p and "Extra inputs" in p for p in problems)
    assert any("field 'link'" in p and "https://" in p for p in problems)


def test_wrong_schema(root, catalog):
    f = next((root / "good").rglob("results.parquet"))
    table = pq.read_table(f).drop_columns(["query_accuracy"])
    pq.write_table(table.replace_schema_metadata({"mqarbench.results.schema_version": "1"}), f)
    problems = _problems(root, catalog)
    assert any(str(f) in p and "lacks columns query_accuracy" in p for p in problems)


def test_values_the_types_allow_but_the_schema_forbids(root, catalog):
    def edit(rows):
        rows[0]["query_accuracy"] = 140.0
        rows[1]["slice"] = "whole"
        rows[2]["run_id"] = None
        return rows
    _edit_rows(root / "good", edit)
    problems = _problems(root, catalog)
    assert any("field 'query_accuracy': must be a percent in 0-100" in p for p in problems)
    assert any("field 'slice': must be 'overall' or 'cell'" in p for p in problems)
    assert any("field 'run_id': is empty" in p for p in problems)


@pytest.mark.parametrize("column, value, message", [
    ("test_task_hash", "0" * 64, "field 'test_task_hash': task 'shuffle' v1 hash 000"),
    ("test_task_version", 7, "field 'test_task_version': task 'shuffle' is version 7"),
    ("test_task", "no-such-task", "field 'test_task': unknown task 'no-such-task'"),
])
def test_task_ids_versions_hashes_must_match_current_tasks(root, catalog, column, value, message):
    _edit_rows(root / "good", lambda rows: [{**r, column: value} if r["test_task"] == "shuffle" else r
                                            for r in rows])
    problems = _problems(root, catalog)
    assert any(message in p and "results.parquet" in p for p in problems), problems


def test_mixed_presets(root, catalog):
    f = next((root / "good").rglob("results.parquet"))
    _edit_rows(f.parent, lambda rows: [{**r, "preset": "small"} for r in rows])
    problems = _problems(root, catalog)
    assert any("field 'preset': mixed presets small, tiny" in p for p in problems)


def test_metadata_preset_must_match_results(root, catalog):
    meta = yaml.safe_load((root / "good" / "metadata.yaml").read_text())
    (root / "good" / "metadata.yaml").write_text(yaml.safe_dump({**meta, "preset": "paper"}))
    assert any("field 'preset': says 'paper' but the results are preset 'tiny'" in p
               for p in _problems(root, catalog))


def test_duplicate_run_ids_and_identical_rows(root, catalog):
    shutil.copytree(root / "good", root / "copy")
    problems = _problems(root, catalog)
    assert any("copy" in p and "field 'run_id'" in p and "already in submission 'good'" in p for p in problems)
    # Renaming the runs does not hide a copy: the rows are identical.
    _edit_rows(root / "copy", lambda rows: [{**r, "run_id": "renamed-" + r["run_id"]} for r in rows])
    problems = _problems(root / "copy", catalog)
    assert any("identical to rows of submission 'good'" in p for p in problems), problems
    # A genuinely different model's results are no duplicate.
    write_submission(root, "other", catalog, "rwkv")
    assert _problems(root / "other", catalog) == []


def test_claimed_suite_missing_an_experiment(root, catalog):
    shutil.rmtree(next(p for p in (root / "good" / "runs").iterdir()
                       if "k4v8-shuffle" in (p / "results.json").read_text()))
    problems = _problems(root, catalog)
    assert any("field 'suites': suite 'main' lacks experiments K4V8-Shuffle (k4v8-shuffle -> k4v8-shuffle)" in p
               for p in problems), problems


def test_test_task_missing_grid_cells(root, catalog):
    def edit(rows):
        cells = [r for r in rows if r["slice"] == "cell" and r["test_task"] == "shuffle"]
        return [r for r in rows if not cells or r is not cells[0]]
    _edit_rows(root / "good", edit)
    problems = _problems(root, catalog)
    assert any("test shuffle lacks grid cells (seq_len, num_kv_pairs) (64, 2)" in p for p in problems), problems


def test_overall_must_be_the_mean_of_cells(root, catalog):
    _edit_rows(root / "good", lambda rows: [{**r, "query_accuracy": 99.0} if r["slice"] == "overall" else r
                                            for r in rows])
    assert any("is not the mean of its cells" in p for p in _problems(root, catalog))


def test_unknown_suite_claim(root, catalog):
    meta = yaml.safe_load((root / "good" / "metadata.yaml").read_text())
    (root / "good" / "metadata.yaml").write_text(yaml.safe_dump({**meta, "suites": ["everything"]}))
    assert any("unknown suite 'everything'" in p for p in _problems(root, catalog))


def test_attention_maps_must_load_without_pickle_and_fit(tmp_path, catalog):
    sub = write_submission(tmp_path, "att", catalog, "mamba", attention=True)
    assert _problems(sub, catalog) == []
    npz = next(sub.rglob("attention/*.npz"))
    np.savez(npz, maps=np.zeros((2, 8, 9), np.float16), input_ids=np.zeros(8, np.int32),
             labels=np.zeros(8, np.int32))
    assert any("field 'maps': shape (2, 8, 9)" in p for p in _problems(sub, catalog))
    np.savez(npz, maps=np.array([{"x": 1}], dtype=object))
    assert any("not a readable attention file" in p for p in _problems(sub, catalog))


def test_corrupt_results_file(root, catalog):
    next((root / "good").rglob("results.parquet")).write_bytes(b"not parquet")
    assert any("not a readable Parquet results file" in p for p in _problems(root, catalog))


def test_the_repository_submissions_are_valid(catalog):
    """What CI checks on every pull request that adds a submission."""
    from mqarbench.paths import leaderboard_dir

    subs, problems = validate_path(leaderboard_dir() / "submissions", catalog)
    assert problems == [], "\n".join(problems)
