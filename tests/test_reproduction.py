"""docs/reproduction.md: the paper's numbers and the verdict rules on hand-made scores."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from mqarbench.analysis import paper_numbers as paper
from mqarbench.analysis import reproduction as rep
from mqarbench.errors import UserError
from mqarbench.leaderboard.boards import Score

COLS = list(paper.TABLE3_COLUMNS.values())


def s(*values: float) -> Score:
    return Score(tuple(values))


def row(*means: float) -> dict:
    return {c: s(m) for c, m in zip(COLS, means)}


def test_paper_tables_are_complete_and_match_where_they_overlap():
    assert len(paper.TABLE1_MAMBA) == 9 and len(paper.TABLE2_MAMBA) == 9
    assert set(paper.TABLE3) == set(paper.TABLE3_SCALE) and len(paper.TABLE3) == 7
    mamba = paper.TABLE3["mamba"]
    for cell in (("shuffle", "shuffle"), ("standard", "last"), ("standard", "shuffle")):
        assert mamba[cell] == paper.TABLE1_MAMBA[cell]  # Table 3 repeats Table 1's cells
    assert mamba[("k2v2", "k2v2")] == paper.TABLE2_MAMBA[("k2v2", "k2v2")]


def test_clearly_above_uses_the_margin_or_the_seed_spread():
    assert rep.clearly_above(s(80), s(70)) and not rep.clearly_above(s(74), s(70))
    assert not rep.clearly_above(s(70, 90), s(70, 70))  # mean gap 10 < 2 combined stds (28)
    assert rep.clearly_above(s(90, 91, 89), s(70, 71, 69))


@pytest.mark.parametrize("ind,last,shuf,verdict", [
    (99, 15, 22, "reproduced"), (99, 95, 90, "not reproduced"), (99, 60, 70, "differs"),
    (50, 0, 0, "differs")])
def test_finding1_std_collapse(ind, last, shuf, verdict):
    scores = {"mamba": {("standard", "standard"): s(ind), ("standard", "last"): s(last),
                        ("standard", "shuffle"): s(shuf)}}
    assert rep.judge_std_collapse(scores).verdict == verdict


def test_missing_scores_are_not_measured_and_named():
    v = rep.judge_std_collapse({"mamba": {("standard", "last"): s(1)}})
    assert v.verdict == "not measured" and "standard->standard" in v.evidence
    assert rep.judge_global_selection({}).verdict == "not measured"


@pytest.mark.parametrize("ind,ood,verdict", [(99, 0, "reproduced"), (99, 80, "not reproduced"),
                                             (99, 20, "differs"), (40, 0, "differs")])
def test_finding2_k1v1_to_k2v2(ind, ood, verdict):
    scores = {"mamba": {("k1v1", "k1v1"): s(ind), ("k1v1", "k2v2"): s(ood)}}
    assert rep.judge_k1v1_to_k2v2(scores).verdict == verdict


@pytest.mark.parametrize("means,verdict", [((99, 94, 94, 99, 99, 99), "reproduced"),
                                           ((99, 94, 94, 3, 3, 0), "not reproduced"),
                                           ((99, 94, 94, 80, 99, 99), "differs")])
def test_finding3_attention(means, verdict):
    assert rep.judge_attention_everywhere({"pythia": row(*means)}).verdict == verdict


def test_finding4_hyena_rwkv():
    mamba = row(80, 15, 22, 99, 66, 0)
    weak_flat = row(1, 1, 2, 70, 60, 20)
    strong = row(99, 98, 98, 90, 80, 10)
    assert rep.judge_hyena_rwkv({"mamba": mamba, "hyena": weak_flat, "rwkv": weak_flat}
                                ).verdict == "reproduced"
    assert rep.judge_hyena_rwkv({"mamba": mamba, "hyena": strong, "rwkv": strong}
                                ).verdict == "not reproduced"
    assert rep.judge_hyena_rwkv({"mamba": mamba, "hyena": weak_flat, "rwkv": strong}
                                ).verdict == "differs"


def test_finding5_state_size():
    base = row(80, 15, 22, 99, 66, 0)
    uneven = {"mamba": base, "mamba_2x_state": row(88, 40, 31, 99, 78, 0),
              "mamba_4x_state": row(96, 35, 32, 99, 57, 0)}
    assert rep.judge_state_size(uneven).verdict == "reproduced"
    flat = {"mamba": base, "mamba_2x_state": base, "mamba_4x_state": base}
    assert rep.judge_state_size(flat).verdict == "not reproduced"
    even = {"mamba": row(80, 15, 22, 90, 66, 0), "mamba_2x_state": row(90, 30, 35, 99.9, 76, 10),
            "mamba_4x_state": row(95, 40, 40, 99.9, 80, 20)}
    assert rep.judge_state_size(even).verdict == "differs"


def test_finding6_global_selection():
    others = {m: row(50, 20, 20, 80, 60, 0) for m in rep.RECURRENT}
    others["mamba"] = row(80, 15, 22, 99, 66, 0)
    won = dict(others, global_mamba=row(90, 42, 36, 99, 81, 80))
    assert rep.judge_global_selection(won).verdict == "reproduced"
    lost = dict(others, global_mamba=row(27, 20, 24, 2, 2, 0))
    assert rep.judge_global_selection(lost).verdict == "not reproduced"
    half = dict(others, global_mamba=row(90, 42, 36, 99, 81, 0))
    assert rep.judge_global_selection(half).verdict == "differs"
    # without the other recurrent models: a loss to mamba on both columns is already a verdict,
    # a win is not (another model might score higher)
    pair = {m: lost[m] for m in ("mamba", "global_mamba")}
    assert rep.judge_global_selection(pair).verdict == "not reproduced"
    assert rep.judge_global_selection({m: won[m] for m in ("mamba", "global_mamba")}).verdict == "not measured"


def test_render_from_the_committed_submissions(tmp_path):
    from mqarbench.paths import REPO_ROOT

    out = tmp_path / "reproduction.md"
    assert rep.main(["--submissions", str(REPO_ROOT / "leaderboard/submissions"),
                     "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("**") >= 12  # six bold verdicts
    assert "| mamba | 129m | 80.98 / " in text and "Table 2" in text and "Fig. 6(a)" in text
    assert "(board: preset small v2" in text and "## Earlier board" not in text
    current = rep.load_measured(REPO_ROOT / "leaderboard/submissions", "small")
    assert set(current.scores) >= {"pythia", "hyena", "rwkv", "mamba", "mamba_2x_state", "mamba_4x_state",
                                   "global_mamba"}
    # the calibration section: one row per model of the board, and pythia's seeds on every task it ran
    section = text[text.index("## Calibration targets"):]
    section = section[:section.index("\n## ", 3)]
    assert all(f"\n| {m} | " in section for m in current.scores)
    assert len(current.valid["pythia"]["standard"].values) == current.scores["pythia"][("standard", "last")].n


def test_an_earlier_version_of_the_preset_is_rendered_apart_and_never_judged(tmp_path):
    """A copy of the hyena submission relabelled as results of small v1 (its tasks' v1 data hashes)."""
    import shutil

    import pyarrow.parquet as pq

    from mqarbench.leaderboard.catalog import TaskCatalog
    from mqarbench.paths import REPO_ROOT

    subs = tmp_path / "submissions"
    shutil.copytree(REPO_ROOT / "leaderboard/submissions/baseline-hyena-small", subs / "baseline-hyena-small")
    old = shutil.copytree(subs / "baseline-hyena-small", subs / "baseline-hyena-old")
    catalog, v1 = TaskCatalog(tmp_path / "data"), {}
    for path in old.rglob("results.parquet"):
        table = pq.read_table(path).to_pylist()
        for row in table:
            for side in ("train", "test"):
                task = row[f"{side}_task"]
                if task not in v1:
                    versions = catalog.ref(task, "small").preset_versions
                    [v1[task]] = [h for h, version in versions.items() if version == 1]
                row[f"{side}_task_hash"] = v1[task]
        pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(path)), path)
        for sidecar in path.parent.glob("*.sha256"):
            sidecar.unlink()

    out = tmp_path / "reproduction.md"
    assert rep.main(["--submissions", str(subs), "--out", str(out), "--data-dir", str(tmp_path / "data")]) == 0
    head, _, earlier = out.read_text().partition("## Earlier board: preset small v1")
    assert "(board: preset small v2" in head and "| hyena | 153m | ✗ / 1.61 ± 0.29 (n=3)" in head
    assert "| hyena | 153m | ✗ / 1.61 ± 0.29 (n=3)" in earlier  # the same numbers, on a board of their own
    assert "baseline-hyena-old" in earlier and "baseline-hyena-old" not in head


def test_no_results_at_a_preset_is_one_user_error(tmp_path, capsys):
    assert rep.main(["--submissions", str(tmp_path), "--out", str(tmp_path / "x.md")]) == 2
    assert "no results at preset 'small'" in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()
    with pytest.raises(UserError):
        rep.load_measured(Path(tmp_path), "paper")


def test_a_data_dir_that_is_a_file_is_one_user_error(tmp_path, capsys):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("")
    assert rep.main(["--data-dir", str(not_a_dir), "--out", str(tmp_path / "x.md")]) == 2
    assert "--data-dir" in capsys.readouterr().err and not (tmp_path / "x.md").exists()


def test_models_beyond_the_paper_get_their_own_table_with_shortcut_readings():
    scores = {"mamba": row(85, 24, 32, 86, 60, 0), "pythia": row(100, 99, 99, 99, 39, 97),
              "newcontent": row(90, 85, 81, 70, 30, 0), "newposition": row(90, 20, 25, 50, 10, 0),
              "newfail": row(10, 5, 5, 3, 1, 0)}
    scores["newcontent"][("k1v1", "k2v2")] = s(60.0, 80.0)  # ratio 70/70 = 1.00
    scores["newfail"][("k1v1", "k2v2")] = s(2.9)  # 2.9 / 3: a ratio near 1 on a task not learned
    scores["newngram"] = {("k2v2", "k2v2"): s(90.0), ("k1v1", "k2v2"): s(9.0)}  # no main suite
    measured = rep.Measured("small", "test", scores, {}, {})
    text = "\n".join(rep._new_models(measured))
    assert "## Models beyond the paper" in text
    assert "| newcontent | 90.00 (n=1) | 85.00 (n=1) | 81.00 (n=1) |" in text
    assert "| newcontent |" in text and "| 0.92 | 1.00 |" in text  # (85 + 81) / 2 / 90
    assert "newcontent: positional 0.92: recall survives the change (no positional shortcut); n-gram 1.00:" in text
    assert "newposition: positional 0.25: leans on the positional shortcut; n-gram not measured." in text
    assert ("newfail: positional not read (in-domain 10.0 < 50: the task is not learned); "
            "n-gram not read (in-domain 3.0 < 50") in text
    assert "newngram: positional not measured; n-gram 0.10: leans on the n-gram shortcut." in text
    assert "for comparison, mamba: positional 0.33: leans on the positional shortcut" in text
    assert "- pythia" not in text  # a comparison row only, not read out
    assert rep._new_models(rep.Measured("small", "t", {"mamba": scores["mamba"]}, {}, {})) == []


def test_pending_runs_are_shown_apart_and_never_judged(tmp_path):
    """Runs of an incomplete suite (here: the committed mamba2 runs trained on k2v2, copied as if
    pending) get their own section with their cells; the verdicts and the board do not change."""
    import json
    import shutil

    from mqarbench.paths import REPO_ROOT

    subs = REPO_ROOT / "leaderboard/submissions"
    pending = tmp_path / "pending" / "mamba2" / "runs"
    pending.mkdir(parents=True)
    for run in (subs / "baseline-mamba2-small" / "runs").iterdir():
        if json.loads((run / "run.json").read_text())["train_task"] == "k2v2":
            shutil.copytree(run, pending / run.name)
    assert len(list(pending.iterdir())) == 6  # 2 learning rates x 3 seeds
    with_pending, without = tmp_path / "with.md", tmp_path / "without.md"
    assert rep.main(["--out", str(with_pending), "--pending", str(tmp_path / "pending")]) == 0
    (tmp_path / "empty").mkdir()
    assert rep.main(["--out", str(without), "--pending", str(tmp_path / "empty")]) == 0
    text, plain = with_pending.read_text(), without.read_text()
    board = rep.load_measured(subs, "small")
    k2v2 = rep.fmt(board.scores["mamba2"][("k2v2", "k2v2")])
    assert "## Runs waiting for a whole suite" in text and "## Runs waiting" not in plain
    section = text.split("## Runs waiting for a whole suite")[1].split("## Where the numbers come from")[0]
    assert f"| mamba2 | not run | not run | not run | {k2v2} |" in section
    assert f"- mamba2: K2V2 {k2v2}, " in section and "pending/mamba2/` (6 runs)" in section
    assert text.split("## Runs waiting")[0] == plain.split("## Where the numbers come from")[0]  # nothing else moves


def test_a_mistyped_pending_folder_is_an_error_not_an_empty_section(tmp_path, capsys):
    out = tmp_path / "reproduction.md"
    assert rep.main(["--out", str(out), "--pending", str(tmp_path / "pendnig")]) == 2
    err = capsys.readouterr().err
    assert "--pending" in err and "pendnig" in err and "not a directory" in err
    assert not out.exists()  # nothing half-written


def test_pending_n_gram_ratio_takes_the_boards_in_domain_cell(tmp_path):
    """mamba2's k1v1 runs (copied from its submission) wait in a pending folder while its k2v2
    runs are on the board: the pending row's n-gram ratio is their K1V1->K2V2 over the board's K2V2."""
    import json
    import shutil

    from mqarbench.paths import REPO_ROOT

    pending = tmp_path / "pending" / "mamba2" / "runs"
    pending.mkdir(parents=True)
    for run in (REPO_ROOT / "leaderboard/submissions/baseline-mamba2-small/runs").iterdir():
        if json.loads((run / "run.json").read_text())["train_task"] == "k1v1":
            shutil.copytree(run, pending / run.name)
    out = tmp_path / "out.md"
    assert rep.main(["--out", str(out), "--pending", str(tmp_path / "pending")]) == 0
    board = rep.load_measured(REPO_ROOT / "leaderboard/submissions", "small")
    waiting = rep.load_pending(tmp_path / "pending", board)
    transfer = waiting.scores["mamba2"][("k1v1", "k2v2")]
    ratio = transfer.mean / board.scores["mamba2"][("k2v2", "k2v2")].mean
    section = out.read_text().split("## Runs waiting for a whole suite")[1]
    row = next(line for line in section.splitlines() if line.startswith("| mamba2 |"))
    assert row.endswith(f"| {rep.fmt(transfer)} | {ratio:.2f} |") and "| not run | not run |" in row
    # no Table 3 column among its runs: the line beside mamba lists the cells they do hold
    said = next(line for line in section.splitlines() if line.startswith("- mamba2: no Table 3 column yet"))
    assert f"k1v1->k2v2 {rep.fmt(transfer)}" in said and "k1v1->k1v1 " in said


def test_cells_over_many_seeds_are_paired_with_mamba_and_sit_beside_the_board(tmp_path):
    """The many-seeds section: each folder's mean ± std with the board's score beside it, the
    paired difference to mamba's folder over common seeds, and the recorded kernel paths."""
    from mqarbench.analysis import many_seeds
    from mqarbench.results.score import over_seeds
    from test_seed_spread import _write_run

    for seed, (m, g) in enumerate([(80.0, 70.0), (90.0, 60.0), (85.0, 20.0)]):
        _write_run(tmp_path / "mamba", f"m{seed}", seed, m, valid=m, paths={"mamba_inner": "x"}, model="mamba")
        _write_run(tmp_path / "gm-path", f"g{seed}", seed, g, valid=g, paths={"long_conv": "triton"})
    board = {"mamba": {("k2v2", "k2v2"): over_seeds([91.0, 92.0, 93.0])}}
    text = "\n".join(many_seeds.render(tmp_path, board, "seeds/"))
    assert "| mamba | mamba | 85.00 ± 5.00 (n=3) (board: 92.00 ± 1.00 (n=3)) |" in text
    assert "| gm-path | global_mamba | 50.00 ± 26.46 (n=3) (board: not run) |" in text
    # paired: (70-80 + 60-90 + 20-85) / 3 = -35; all three negative: p = 2/8
    assert "- gm-path: k2v2 -> k2v2 -35.00 (p = 0.250, n = 3; findings' rule: within noise)" in text
    assert "- gm-path: long_conv=triton" in text
    assert many_seeds.render(tmp_path / "mamba" / "runs" / "m0", board, "x") == []  # no folders of runs


def test_a_mistyped_many_seeds_folder_is_one_user_error(tmp_path, capsys):
    out = tmp_path / "reproduction.md"
    assert rep.main(["--out", str(out), "--many-seeds", str(tmp_path / "seeds")]) == 2
    err = capsys.readouterr().err
    assert "--many-seeds" in err and "not a directory" in err
    assert not out.exists()
