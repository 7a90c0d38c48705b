"""benchmarks/board_todo.py: a run counts as on the board only if its results hold every test its
suite asks (a run trained by a smaller suite has the same id but fewer tests)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench_scripts import load_script
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import RunSpec, plan_runs, suite_datasets

todo_mod = load_script("board_todo")
ARGS = ["--models", "pythia", "--suite", "main", "--seeds", "2", "--preset", "tiny"]


def fake_run(root: Path, folder: str, spec: RunSpec, tests: list, stale_hash: bool = False) -> None:
    """A run dir as the board holds it; only the columns board_todo reads."""
    run_dir = root / folder / "runs" / spec.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text("{}")
    if tests is None:
        return  # a run dir without results
    refs = [t for t in spec.tests if t.task in tests]
    pq.write_table(pa.table({"test_task": [t.task for t in refs], "test_task_version": [t.version for t in refs],
                             "test_task_hash": ["0" * 12 if stale_hash else t.content_hash for t in refs]}),
                   run_dir / "results.parquet")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("board")
    data, root = tmp / "data", tmp / "leaderboard"
    specs = plan_runs(["pythia"], "main", "tiny", suite_datasets("main", "tiny", data), sweep("tiny"), [0, 1], root)
    by = {(s.train.task, s.seed): s for s in specs}
    assert [t.task for t in by[("standard", 0)].tests] == ["last", "shuffle"]
    fake_run(root, "submissions/baseline-pythia-small", by[("standard", 0)], ["last", "shuffle"])
    # trained by a suite asking only standard -> shuffle: same run id, `last` missing
    fake_run(root, "submissions/baseline-pythia-small", by[("standard", 1)], ["shuffle"])
    fake_run(root, "pending/pythia", by[("shuffle", 0)], ["shuffle"])
    fake_run(root, "pending/pythia", by[("k2v2", 1)], ["k2v2", "k2v2-robustness"], stale_hash=True)
    fake_run(root, "pending/pythia", by[("k4v8-shuffle", 0)], None)
    return specs, by, data, root


def test_classify_counts_a_run_only_with_all_its_tests(board):
    specs, by, data, root = board
    [todo] = todo_mod.board_todo(["pythia"], "main", 2, "tiny", root, data)
    assert [s.run_id for s in todo.planned] == [s.run_id for s in specs]
    assert todo.complete == [by[("shuffle", 0)].run_id, by[("standard", 0)].run_id]
    assert todo.missing_tests == [by[(t, s)].run_id for t, s in
                                  [("standard", 1), ("k2v2", 1), ("k4v8-shuffle", 0)]]
    assert len(todo.absent) == len(specs) - 5
    done = {by[("shuffle", 0)].run_id, by[("standard", 0)].run_id}
    assert todo.to_train == [s.run_id for s in specs if s.run_id not in done]  # plan order
    assert todo.in_submissions


def test_printed_phase_and_ids(board, capsys):
    specs, by, data, root = board
    want = [s.run_id for s in specs if s.run_id not in {by[("shuffle", 0)].run_id, by[("standard", 0)].run_id}]
    assert by[("standard", 1)].run_id in want  # present, but without `last`: retrained
    common = [*ARGS, "--root", str(root), "--data-dir", str(data)]
    assert todo_mod.main(common) == 0
    out = capsys.readouterr().out
    assert f"| pythia | {len(specs)} | 2 | 3 | {len(specs) - 5} | - | board@pythia@main@2@{'+'.join(want)} |" in out
    assert f"{len(want)} runs to train" in out
    assert todo_mod.main([*common[2:], "--ids-only", "pythia"]) == 0
    assert capsys.readouterr().out.split() == want
    # `new`: pythia has a run in a submission, so it is not new
    assert todo_mod.main([*common[2:], "--models", "new"]) == 0
    assert "| pythia |" not in capsys.readouterr().out


def test_pack_seconds_from_the_boards_runs_of_packs_no_larger(tmp_path):
    """The estimate: per task the longest wall time among runs of packs no larger than the one to
    train, scaled by sqrt(members / their pack's size); a task timed only in larger packs, the
    shortest of those; a task never timed, the longest timed one; the pack takes its longest
    task's time (members train side by side); 0 with nothing timed."""
    data, root = tmp_path / "data", tmp_path / "leaderboard"
    specs = plan_runs(["pythia"], "main", "tiny", suite_datasets("main", "tiny", data), sweep("tiny"), [0], root)
    by = {s.train.task: s for s in specs}
    timed = {"standard": (300.0, 2), "shuffle": (100.0, 2), "k2v2": (900.0, 99)}  # k2v2: a larger pack
    for task, (wall, pack) in timed.items():
        run_dir = root / "pending" / "pythia" / "runs" / by[task].run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({"model": "pythia", "train_task": task, "pack_size": pack,
                                                      "timing": {"wall_s": wall}}))
    index = todo_mod.index_runs(root)
    [todo] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", root, data, ["shuffle", "k2v2"], index=index)
    # two lrs per task in `tiny`? whatever the plan holds, both tasks are missing (no results)
    assert {s.train.task for s in todo.planned} == {"shuffle", "k2v2"} and set(todo.to_train) == {s.run_id for s in todo.planned}
    assert todo.pack_s == 900  # shuffle's own 100 s; k2v2 timed only in a larger pack: its 900 s, an upper bound
    [both] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", root, data, ["shuffle", "standard"], index=index)
    assert both.pack_s == 300  # both timed in packs of 2: side by side, the longer one's 300 s, not 400
    [twice] = todo_mod.board_todo(["pythia"], "main", 2, "tiny", root, data, ["shuffle", "standard"], index=index)
    assert len(twice.to_train) == 4 and twice.pack_s == round(300 * 2 ** 0.5)  # twice the members: x sqrt(4 / 2)
    [larger_only] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", root, data, ["k2v2"], index=index)
    assert larger_only.pack_s == 900
    [none] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", tmp_path / "empty", data, ["shuffle"], index={})
    assert none.pack_s == 0


def test_pack_seconds_of_a_task_never_trained_scales_by_its_tokens(tmp_path):
    """A task the model never trained: another task's time x the ratio of their training tokens,
    which any model's runs give (a task's tokens do not depend on the model)."""
    data, root = tmp_path / "data", tmp_path / "leaderboard"
    specs = plan_runs(["pythia", "mamba"], "main", "tiny", suite_datasets("main", "tiny", data), sweep("tiny"),
                      [0], root)
    by = {(s.model, s.train.task): s for s in specs}
    runs = [("pythia", "k2v2", 600.0, 100e6), ("mamba", "standard", 50.0, 250e6), ("mamba", "k2v2", 20.0, 100e6)]
    for model, task, wall, tokens in runs:
        run_dir = root / "pending" / model / "runs" / by[(model, task)].run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({
            "model": model, "train_task": task, "pack_size": 1, "train_tokens_per_s": tokens / wall,
            "timing": {"wall_s": wall, "train_s": wall}}))
    index = todo_mod.index_runs(root)
    [todo] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", root, data, ["standard"], index=index)
    assert len(todo.to_train) == 1 and todo.pack_s == round(600 * 250 / 100)  # not k2v2's 600 s
    [shuffle] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", root, data, ["shuffle"], index=index)
    assert shuffle.pack_s == 600  # no model trained shuffle: its tokens are unknown, the longest time
    # a pythia run on k2v2 that early stopping ended after 30 s, a fifth of the tokens: not a 30 s task
    early = root / "pending" / "mamba" / "runs" / "early"
    early.mkdir(parents=True)
    (early / "run.json").write_text(json.dumps({
        "model": "pythia", "train_task": "k2v2", "pack_size": 1, "train_tokens_per_s": 20e6 / 30.0,
        "timing": {"wall_s": 30.0, "train_s": 30.0}}))
    timings = todo_mod.measured_wall_s(todo_mod.index_runs(root))
    [k2v2] = todo_mod.board_todo(["pythia"], "main", 1, "tiny", root, data, ["k2v2"], index=index)
    assert todo_mod.pack_seconds(k2v2, timings) == 600  # max(600, 30 * 100 / 20 = 150)
    timings = [t for t in timings if t[3] != 600.0]
    assert todo_mod.pack_seconds(k2v2, timings) == 150


def test_train_picks_the_runs_of_those_tasks(board, capsys):
    specs, by, data, root = board
    common = [*ARGS[2:], "--root", str(root), "--data-dir", str(data), "--ids-only", "pythia"]
    assert todo_mod.main([*common, "--train", "standard", "k2v2"]) == 0
    want = [s.run_id for s in specs if s.train.task in ("standard", "k2v2") and s.run_id != by[("standard", 0)].run_id]
    assert capsys.readouterr().out.split() == want and by[("standard", 1)].run_id in want


@pytest.mark.parametrize("flags, message", [(["--suite", "nope"], "unknown suite 'nope'"),
                                            (["--models", "nope"], "unknown model 'nope'"),
                                            (["--train", "last"], "--train last: not a training task of suite main")])
def test_one_line_errors(board, capsys, flags, message):
    _, _, data, root = board
    assert todo_mod.main([*ARGS, "--root", str(root), "--data-dir", str(data), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
