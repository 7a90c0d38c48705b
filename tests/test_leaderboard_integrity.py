"""Nothing wrong reaches the board: forged submissions are refused, reported numbers are re-evaluated."""

from __future__ import annotations

import json
import shutil

import pytest

from mqarbench.cli import main
from mqarbench.leaderboard.validate import recorded_run_id, validate_path
from mqarbench.leaderboard.verify import verified_runs
from mqarbench.results.store import read_results, to_table, write_results
from test_leaderboard_fixtures import catalog, write_submission  # noqa: F401
from test_runner_fixtures import STANDIN, mini_env, mini_tasks  # noqa: F401


@pytest.fixture
def root(tmp_path, catalog):
    write_submission(tmp_path, "good", catalog, "mamba")
    return tmp_path


def _validate(path, catalog, capsys):
    code = main(["leaderboard", "validate", str(path), "--data-dir", str(catalog.data_dir)])
    return code, capsys.readouterr().out


def _run_dirs(sub):
    return sorted(p for p in (sub / "runs").iterdir())


def test_results_json_edited_apart_from_parquet(root, catalog, capsys):
    twin = _run_dirs(root / "good")[0] / "results.json"
    rows = json.loads(twin.read_text())
    rows[0]["query_accuracy"] = 99.0
    twin.write_text(json.dumps(rows))
    code, out = _validate(root / "good", catalog, capsys)
    assert code == 1 and f"{twin}: differs from results.parquet" in out


def test_copied_run_under_a_new_id_and_seed(root, catalog, capsys):
    src = _run_dirs(root / "good")[0]
    rows = read_results(src / "results.parquet").to_pylist()
    new_id = recorded_run_id({**rows[0], "seed": 1})  # a careful forger recomputes the id
    copy = root / "good" / "runs" / new_id
    write_results(to_table([{**r, "seed": 1, "run_id": new_id} for r in rows]), copy / "results.parquet")
    code, out = _validate(root / "good", catalog, capsys)
    assert code == 1 and f"run {new_id} carries the same rows as run {src.name}" in out


def test_run_id_is_recomputed_from_its_inputs(root, catalog, capsys):
    run = _run_dirs(root / "good")[0]
    rows = read_results(run / "results.parquet").to_pylist()
    write_results(to_table([{**r, "seed": 7} for r in rows]), run / "results.parquet")  # id kept
    code, out = _validate(root / "good", catalog, capsys)
    assert code == 1 and f"field 'run_id': run {run.name} does not match its recorded" in out


def test_missing_metadata_is_named_at_its_real_path(root, catalog, capsys):
    (root / "good" / "metadata.yaml").unlink()
    code, out = _validate(root / "good", catalog, capsys)
    assert code == 1 and f"{root / 'good' / 'metadata.yaml'}: missing" in out
    assert "runs/metadata.yaml" not in out


@pytest.mark.parametrize("forgery", ["score", "hash"])
def test_build_refuses_an_invalid_submission_unless_previewing(root, catalog, capsys, forgery):
    run = _run_dirs(root / "good")[0]
    rows = read_results(run / "results.parquet").to_pylist()
    if forgery == "score":
        rows = [{**r, "query_accuracy": 150.0} for r in rows]
    else:
        rows = [{**r, "test_task_hash": "0" * 64} for r in rows]
    write_results(to_table(rows), run / "results.parquet")
    site = root / "site"
    args = ["leaderboard", "build", "--source", str(root / "good"), "--out", str(site),
            "--data-dir", str(catalog.data_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "nothing was published" in err and ("0-100" in err if forgery == "score" else "test_task_hash" in err)
    assert not site.exists()
    assert main(args + ["--allow-invalid"]) == 0
    pages = list(site.rglob("*.html"))
    assert len(pages) > 3 and all("preview-banner" in p.read_text() for p in pages)


def test_a_valid_build_has_no_banner_and_marks_unverified(root, catalog):
    site = root / "site"
    assert main(["leaderboard", "build", "--source", str(root / "good"), "--out", str(site),
                 "--data-dir", str(catalog.data_dir), "--verified-dir", str(root / "ver")]) == 0
    index = (site / "index.html").read_text()
    assert "preview-banner" not in index and 'class="badge unverified"' in index
    assert 'class="badge verified"' not in index.split("</thead>")[1].split("</tbody>")[0]


def _honest_submission(env, capsys):
    assert main(["run", "--model", STANDIN, "--suite", "positional", "--preset", "tiny", "--epochs", "2",
                 "--out", "out", "--data-dir", "data", "--no-site"]) == 0
    assert main(["leaderboard", "submit", "--results", "out", "--name", "honest", "--model-name", "GRU",
                 "--authors", "A. Author", "--link", "https://example.org", "--adapter-source",
                 "https://example.org/gru", "--suite", "positional", "--root", "subs", "--data-dir", "data"]) == 0
    capsys.readouterr()
    return env / "subs" / "honest"


def test_verify_passes_an_honest_submission_and_fails_a_forged_number(mini_env, capsys):
    sub = _honest_submission(mini_env, capsys)
    runs = _run_dirs(sub)
    assert len(runs) == 3 and all((r / "weights.safetensors").is_file() for r in runs)
    verify = ["leaderboard", "verify", "--data-dir", "data", "--verified-dir", "ver"]
    assert main(verify + [str(sub)]) == 0
    assert "honest: verified: 3 of 3 reported runs re-evaluated and matched" in capsys.readouterr().out
    assert verified_runs(mini_env / "ver", sub) == {r.name for r in runs}
    build = ["leaderboard", "build", "--data-dir", "data", "--verified-dir", "ver", "--out"]
    assert main(build + ["site", "--source", str(sub)]) == 0
    assert 'class="badge verified"' in (mini_env / "site" / "index.html").read_text().split("</thead>")[1].split("</tbody>")[0]

    # the forgery: one cell raised to 99 and the overall made its mean, consistently everywhere
    forged = mini_env / "forged" / "honest"
    shutil.copytree(sub, forged)
    run = _run_dirs(forged)[0]
    rows = read_results(run / "results.parquet").to_pylist()
    test = rows[0]["test_task"]
    cells = [r for r in rows if r["test_task"] == test and r["slice"] == "cell"]
    cells[0]["query_accuracy"] = 99.0
    overall = next(r for r in rows if r["test_task"] == test and r["slice"] == "overall")
    overall["query_accuracy"] = sum(c["query_accuracy"] for c in cells) / len(cells)
    write_results(to_table(rows), run / "results.parquet")
    assert validate_path(forged, __import__("mqarbench.leaderboard.catalog", fromlist=["x"]).TaskCatalog(
        mini_env / "data"))[1] == [], "validation alone cannot tell"
    assert main(verify + [str(forged)]) == 1
    out = capsys.readouterr().out
    assert f"cell ({cells[0]['seq_len']}, {cells[0]['num_kv_pairs']}): query_accuracy reported 99.0" in out
    assert "NOT verified" in out
    assert main(build + ["site2", "--source", str(forged)]) == 0
    assert 'class="badge unverified"' in (mini_env / "site2" / "index.html").read_text()

    # a passing stamp lapses as soon as the verified files change
    assert main(verify + [str(sub)]) == 0
    write_results(to_table(read_results(runs[0] / "results.parquet").to_pylist()[::-1]), runs[0] / "results.parquet")
    assert runs[0].name not in verified_runs(mini_env / "ver", sub)


def test_verify_names_a_missing_weights_file(mini_env, capsys):
    sub = _honest_submission(mini_env, capsys)
    victim = _run_dirs(sub)[0]
    (victim / "weights.safetensors").unlink()
    assert main(["leaderboard", "verify", str(sub), "--data-dir", "data", "--verified-dir", "ver"]) == 1
    out = capsys.readouterr().out
    assert f"{victim}: no weights.safetensors: this run cannot be verified" in out and "1 carry no weights" in out
