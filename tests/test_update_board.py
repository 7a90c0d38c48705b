"""benchmarks/update_board.py: new runs replace their earlier copies, complete suites become the
submission, the rest waits in pending/, and a merge that would lose a claimed suite changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_scripts import load_script
from mqarbench.leaderboard.metadata import load_metadata
from mqarbench.leaderboard.validate import validate_path
from mqarbench.results.store import overall_scores, to_table, write_results
from mqarbench.runner.hparams import sweep
from mqarbench.runner.plan import RunSpec, plan_runs, suite_datasets
from test_leaderboard_fixtures import catalog, run_rows  # noqa: F401

update_mod = load_script("update_board")
MODEL = "pythia"
NAME = f"baseline-{MODEL}-tiny"


def plan(suite: str, data: Path) -> list[RunSpec]:
    return plan_runs([MODEL], suite, "tiny", suite_datasets(suite, "tiny", data), sweep("tiny"), [0], data)


def write_run(out: Path, catalog, spec: RunSpec, tests: list[str] | None = None, offset: float = 0.0) -> Path:
    """A finished run as the runner writes it, with the planned run id and its recorded inputs."""
    hp = spec.hparams.model_dump(mode="json")
    rows = run_rows(catalog, MODEL, spec.train.task, tests or [t.task for t in spec.tests], seed=spec.seed,
                    lr=hp["lr"], run_id=spec.run_id, offset=offset, family="attention")
    for row in rows:
        row.update(model_config_json=json.dumps(spec.model_config, sort_keys=True), epochs=hp["epochs"],
                   hparams_json=json.dumps(hp, sort_keys=True), batch_size=hp["batch_size"],
                   adapter_version=spec.adapter_version)
    run_dir = out / "runs" / spec.run_id
    write_results(to_table(rows), run_dir / "results.parquet")
    (run_dir / "run.json").write_text(json.dumps({"run_id": spec.run_id, "model": MODEL, "trained": True}))
    return run_dir


@pytest.fixture
def board(tmp_path, catalog):
    """A leaderboard whose pythia submission claims `main` (seed 0 only, tiny)."""
    data, root = catalog.data_dir, tmp_path / "leaderboard"
    results = tmp_path / "first"
    for spec in plan("main", data):
        write_run(results, catalog, spec)
    from mqarbench.leaderboard.submit import submit

    fields = {"model_name": MODEL, "authors": "A. Author", "link": "https://example.org/p",
              "adapter_source": "built-in", "date": "2025-01-01", "suites": ["main"], "notes": "first"}
    _, problems = submit(results, NAME, fields, root / "submissions", catalog)
    assert problems == []
    return root, data


def run(root: Path, data: Path, *args: str) -> int:
    return update_mod.main(["--model", MODEL, "--seeds", "1", "--preset", "tiny", "--root", str(root),
                            "--data-dir", str(data), *args])


def test_retrained_runs_replace_theirs_and_extra_runs_wait_in_pending(board, catalog, tmp_path, capsys):
    root, data = board
    sub = root / "submissions" / NAME
    main_specs, all_specs = plan("main", data), plan("all", data)
    main_ids = {s.run_id for s in main_specs}
    retrained = main_specs[0]
    before = overall_scores(sub / "runs" / retrained.run_id)
    extra = next(s for s in all_specs if s.run_id not in main_ids)
    new = tmp_path / "session"
    write_run(new, catalog, next(s for s in all_specs if s.run_id == retrained.run_id), offset=7.0)
    write_run(new, catalog, extra)
    assert run(root, data, "--runs", str(new)) == 0
    assert "2 new" in capsys.readouterr().out
    assert sorted(p.name for p in (sub / "runs").iterdir()) == sorted(main_ids)
    after = overall_scores(sub / "runs" / retrained.run_id)
    assert after != before and set(before) <= set(after)  # the `all` run has more tests
    assert [p.name for p in (root / "pending" / MODEL / "runs").iterdir()] == [extra.run_id]
    meta = load_metadata(sub / "metadata.yaml")
    assert meta.suites == ["main"] and meta.notes == "first"
    assert validate_path(sub, catalog)[1] == []
    assert not list(root.glob(".update-*"))


def test_a_complete_suite_is_claimed_and_pending_emptied(board, catalog, tmp_path, capsys):
    root, data = board
    all_specs = plan("all", data)
    half = tmp_path / "half"
    for spec in all_specs[:3]:
        write_run(half, catalog, spec)
    assert run(root, data, "--runs", str(half)) == 0
    rest = tmp_path / "rest"
    for spec in all_specs[3:]:
        write_run(rest, catalog, spec)
    assert run(root, data, "--runs", str(rest), "--notes", "complete") == 0
    assert "suites main, all" in capsys.readouterr().out.splitlines()[-1]
    sub = root / "submissions" / NAME
    meta = load_metadata(sub / "metadata.yaml")
    assert meta.suites == ["main", "all"] and meta.notes == "complete"
    assert sorted(p.name for p in (sub / "runs").iterdir()) == sorted(s.run_id for s in all_specs)
    assert not (root / "pending" / MODEL).exists()


def test_losing_a_claimed_suite_changes_nothing(board, catalog, tmp_path, capsys):
    root, data = board
    sub = root / "submissions" / NAME
    spec = next(s for s in plan("main", data) if len(s.tests) > 1)
    files = sorted(p.read_bytes() for p in sub.rglob("*") if p.is_file())
    fewer = tmp_path / "fewer"
    write_run(fewer, catalog, spec, tests=[spec.tests[0].task])  # retrained by a smaller suite
    assert run(root, data, "--runs", str(fewer)) == 2
    err = capsys.readouterr().err
    assert f"{NAME} claims main" in err and err.count("\n") == 1
    assert sorted(p.read_bytes() for p in sub.rglob("*") if p.is_file()) == files
    assert not (root / "pending").exists()


def test_no_new_runs_and_no_submission_are_one_line_errors(board, tmp_path, capsys):
    root, data = board
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert run(root, data, "--runs", str(tmp_path / "empty")) == 2
    assert "no finished run of model 'pythia'" in capsys.readouterr().err
    assert run(root, data, "--runs", str(tmp_path / "nope")) == 2
    assert "no runs/ folder" in capsys.readouterr().err


def test_a_model_without_a_submission_keeps_its_runs_pending_until_a_suite_is_complete(
        board, catalog, tmp_path, capsys):
    root, data = board
    sub = root / "submissions" / NAME
    moved = tmp_path / "moved"
    sub.rename(moved)  # pythia as a model whose runs have never been submitted
    specs = plan("main", data)
    first, second = tmp_path / "first_session", tmp_path / "second_session"
    for spec in specs[:2]:
        write_run(first, catalog, spec)
    assert run(root, data, "--runs", str(first)) == 0
    assert "no submission yet; 2 runs (2 new)" in capsys.readouterr().out
    pending = root / "pending" / MODEL / "runs"
    assert sorted(p.name for p in pending.iterdir()) == sorted(s.run_id for s in specs[:2])
    write_run(second, catalog, specs[2])
    assert run(root, data, "--runs", str(second)) == 0
    assert sorted(p.name for p in pending.iterdir()) == sorted(s.run_id for s in specs[:3])
    for spec in specs[3:]:  # the rest of `main`: a first suite complete needs the first metadata
        write_run(second, catalog, spec)
    assert run(root, data, "--runs", str(second)) == 2
    err = capsys.readouterr().err
    assert "no metadata.yaml, and the runs now cover main; nothing changed" in err and err.count("\n") == 1
    assert f"write {pending.parent / 'metadata.yaml'}" in err
    assert sorted(p.name for p in pending.iterdir()) == sorted(s.run_id for s in specs[:3])
    assert not sub.exists() and not list(root.glob(".update-*"))
    (pending.parent / "metadata.yaml").write_text((moved / "metadata.yaml").read_text())
    assert run(root, data, "--runs", str(second), "--notes", "first of its kind") == 0
    assert "suites main (" in capsys.readouterr().out
    meta = load_metadata(sub / "metadata.yaml")
    assert meta.suites == ["main"] and meta.notes == "first of its kind" and meta.model_name == MODEL
    assert sorted(p.name for p in (sub / "runs").iterdir()) == sorted(s.run_id for s in specs)
    assert validate_path(sub, catalog)[1] == []
    assert not (root / "pending" / MODEL).exists() and not list(root.glob(".update-*"))
