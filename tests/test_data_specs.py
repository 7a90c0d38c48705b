"""Spec, preset and suite loading: the shipped files, and one-line errors for broken ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mqarbench.cli import main
from mqarbench.data import PRESETS, list_suites, list_tasks, load_suite, load_task, resolve
from mqarbench.errors import UserError
from mqarbench.paths import REPO_ROOT

PAPER_TASKS = {"standard", "last", "shuffle", "k1v1", "k1v2", "k2v2", "k4v8-shuffle", "k2v2-robustness",
               "position-robustness"}


def test_shipped_tasks_and_grids():
    assert set(list_tasks()) == PAPER_TASKS
    standard = load_task("standard")
    cells = standard.cells()
    assert len(cells) == 26 and (512, 128) in cells and (64, 32) not in cells
    assert standard.vocab_size == 20_000 and standard.power_a == 0.01 and not standard.filler_may_equal_key
    assert all(n * 15 <= L // 2 for L, n in load_task("k4v8-shuffle").cells())
    assert (64, 8) not in load_task("k2v2").cells() and (64, 4) in load_task("k2v2").cells()
    assert load_task("k2v2-robustness").splits == ("test",)
    assert load_task("position-robustness").splits == ("test",)
    assert load_task("k1v1").splits == ("train", "valid", "test")


def test_presets_scale_the_grid_and_counts():
    assert PRESETS == ("tiny", "small", "paper")
    small = resolve(load_task("standard"), "small")
    assert len(small.grid.cells) == 12
    assert all(L <= 256 and n >= 4 for L, n in small.grid.cells)
    assert small.counts["train"] == [3000] * 12 and small.counts["test"] == [100] * 12
    paper = resolve(load_task("last"), "paper")
    assert len(paper.grid.cells) == 26 and paper.counts["train"] == [20_000] * 26
    assert paper.counts["valid"] == [100] * 26
    tiny = resolve(load_task("k2v2"), "tiny")
    assert all(L <= 128 for L, _ in tiny.grid.cells) and sum(tiny.counts["train"]) < 1000
    assert "train" not in resolve(load_task("position-robustness"), "small").counts


@pytest.mark.parametrize("task", ["standard", "last", "shuffle", "k1v1", "k1v2", "k2v2",
                                  "k4v8-shuffle", "k2v2-robustness", "position-robustness"])
def test_paper_preset_counts_per_cell_match_b1_and_b4(task):
    # B.1: "For each configuration, there are 20,000 examples in the training set and 100
    # examples in both the validation and test sets"; B.4: robustness tests, 100 per configuration.
    spec = load_task(task)
    paper = resolve(spec, "paper")
    assert paper.grid.cells == spec.cells()  # every cell of the paper's grid is kept
    expected = {"train": 20_000, "valid": 100, "test": 100}
    assert set(paper.counts) == set(spec.splits)
    for split, counts in paper.counts.items():
        assert counts == [expected[split]] * len(paper.grid.cells), split


def test_suites():
    assert {"positional", "ngram", "main", "robustness", "all"} <= set(list_suites())
    main_suite = load_suite("main")
    assert [e.name for e in main_suite.experiments] == ["Shuffle", "Std-Last", "Std-Shuffle", "K2V2",
                                                        "K2V2-Robustness", "K4V8-Shuffle"]
    assert main_suite.tests_for("standard") == ["last", "shuffle"]
    everything = load_suite("all")
    pairs = [(e.train, e.test) for e in everything.experiments]
    assert len(pairs) == len(set(pairs)) == 23
    parts = {(e.train, e.test) for s in ("positional", "ngram", "main", "robustness")
             for e in load_suite(s).experiments}
    assert set(pairs) == parts
    assert set(everything.train_tasks()) == {"standard", "last", "shuffle", "k1v1", "k1v2", "k2v2", "k4v8-shuffle"}
    assert {e.table for e in everything.experiments} == {"table1", "table2", "table3", "fig6a"}


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UserError, match="known tasks: .*standard"):
        load_task("standrd")
    with pytest.raises(UserError, match="known suites: .*positional"):
        load_suite("al")


@pytest.fixture
def tasks_copy(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "tasks"
    shutil.copytree(REPO_ROOT / "tasks", root)
    monkeypatch.setenv("MQARBENCH_TASKS_DIR", str(root))
    return root


GOOD = """name: bad
version: 1
description: x
family: positional
placement: standard
seed: 1
grid:
  seq_lens: [64]
"""

BROKEN = {
    "unknown field": (GOOD + "placemnt: last\n", "unknown field `placemnt`"),
    "unknown nested field": (GOOD + "  max_pairs: 3\n", "unknown field `grid.max_pairs`"),
    "wrong type": (GOOD.replace("seed: 1", "seed: abc"), "field `seed`"),
    "bad enum": (GOOD.replace("placement: standard", "placement: middle"), "field `placement`"),
    "pairs do not fit": (GOOD.replace("seq_lens: [64]", "cells: [[64, 32]]"), "cell (64, 32) does not fit"),
    "vocab too small": (GOOD + "vocab_size: 20\n", "vocab_size: 20 is too small for cell (64, 16)"),
    "name mismatch": (GOOD.replace("name: bad", "name: other"), "field `name`"),
    "unknown family": (GOOD.replace("family: positional", "family: copying"), "field `family`"),
    "set by preset": (GOOD + "preset: small\n", "field `preset` is set by the preset"),
    "yaml syntax": (GOOD + "grid: [\n", "not valid YAML"),
    "missing field": (GOOD.replace("seed: 1\n", ""), "missing required field `seed`"),
    "missing family": (GOOD.replace("family: positional\n", ""), "missing required field `family`"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bad_spec_is_one_line_naming_file_and_field(case, tasks_copy, capsys):
    text, expected = BROKEN[case]
    (tasks_copy / "bad.yaml").write_text(text)
    assert main(["tasks", "show", "bad"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(tasks_copy / "bad.yaml") in lines[0] and expected in lines[0]


def test_good_spec_loads(tasks_copy):
    (tasks_copy / "bad.yaml").write_text(GOOD)
    assert load_task("bad").cells() == [(64, 1), (64, 2), (64, 4), (64, 8), (64, 16)]


def test_suite_errors(tasks_copy):
    suites = tasks_copy / "suites"
    (suites / "x.yaml").write_text("name: x\ndescription: d\nexperiments:\n"
                                   "  - {name: A, train: position-robustness, test: standard, table: t}\n")
    with pytest.raises(UserError, match="test only and cannot be a train task"):
        load_suite("x")
    (suites / "x.yaml").write_text("name: x\ndescription: d\nexperiments:\n"
                                   "  - {name: A, train: standard, test: nope, table: t}\n")
    with pytest.raises(UserError, match=r"x.yaml: experiment 'A' names unknown task 'nope'"):
        load_suite("x")
    (suites / "x.yaml").write_text("name: x\ndescription: d\ninclude: [x]\n")
    with pytest.raises(UserError, match="includes itself"):
        load_suite("x")


def test_bad_preset_file(tasks_copy):
    text = (tasks_copy / "presets.yaml").read_text().replace("max_seq_len: 128", "max_seq_len: many")
    (tasks_copy / "presets.yaml").write_text(text)
    with pytest.raises(UserError, match=r"presets.yaml: field `tiny.max_seq_len`"):
        resolve(load_task("standard"), "tiny")


def test_authored_and_resolved_specs_import_in_one_direction():
    """spec.py (authored) knows no presets; presets.py reads presets.yaml; resolved.py joins them."""
    import ast
    from pathlib import Path

    def runtime_imports(name: str) -> set[str]:
        tree = ast.parse((Path(__file__).parent.parent / "mqarbench" / "data" / f"{name}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    assert not {"mqarbench.data.presets", "mqarbench.data.resolved"} & runtime_imports("spec")
    assert "mqarbench.data.resolved" not in runtime_imports("presets")
    assert {"mqarbench.data.spec", "mqarbench.data.presets"} <= runtime_imports("resolved")


def test_resolved_spec_round_trips_through_its_stored_json():
    from mqarbench.data import ResolvedSpec

    for task in ("k2v2", "position-robustness"):
        resolved = resolve(load_task(task), "tiny")
        back = ResolvedSpec.from_json(resolved.to_json())
        assert back == resolved and back.to_json() == resolved.to_json()
        assert back.cells == resolved.cells and back.splits == load_task(task).splits
    text = resolve(load_task("standard"), "tiny").to_json().replace('"counts":{"train":[', '"counts":{"train":[1,')
    with pytest.raises(ValueError, match="one count per cell"):
        ResolvedSpec.from_json(text)


def test_family_names_come_from_the_spec_classes():
    from mqarbench.data import generators, spec

    assert spec.FAMILIES == ("positional", "ngram", "position_robustness")
    assert set(generators._GENERATORS) == set(spec.SPEC_CLASSES)  # one generator per family
    assert {spec.family_of(c) for c in generators._GENERATORS} == set(spec.FAMILIES)
