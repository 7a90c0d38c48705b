"""Boards, scores, SVG/PNG output and example roles, each checked on its own."""

from __future__ import annotations

import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from mqarbench.data import build_dataset, tokens
from mqarbench.leaderboard.boards import Score, block_share_list, build_boards
from mqarbench.leaderboard.catalog import Column
from mqarbench.data.render import mark, pick_example
from mqarbench.leaderboard.png import attention_png
from mqarbench.leaderboard.sources import Entry
from mqarbench.leaderboard.svg import heatmap, share_bars
from mqarbench.leaderboard.tables import leader_rows
from mqarbench.results.store import to_table
from test_leaderboard_fixtures import catalog, run_rows  # noqa: F401


def _entry(rows, key="m"):
    return Entry(key, key, to_table(rows))


def test_score_mean_std_n():
    s = Score((50.0, 60.0, 70.0))
    assert (s.mean, s.std, s.n) == (60.0, 10.0, 3)
    assert s.text() == "60.00 ± 10.00 (n=3)" and Score((42.0,)).text() == "42.00"


def test_reported_score_is_the_lr_with_best_validation_accuracy(catalog):
    good_valid = run_rows(catalog, "m", "shuffle", ["shuffle"], lr=1e-3, valid=90.0, offset=0.0)
    bad_valid = run_rows(catalog, "m", "shuffle", ["shuffle"], lr=1e-2, valid=10.0, offset=50.0)
    [board] = build_boards([_entry(good_valid + bad_valid)])
    expected = next(r["query_accuracy"] for r in good_valid if r["slice"] == "overall")
    assert board.entries[0].score("shuffle", "shuffle").values == (expected,)


def test_presets_and_task_versions_never_share_a_board(catalog):
    tiny = run_rows(catalog, "a", "shuffle", ["shuffle"])
    small = [{**r, "preset": "small"} for r in run_rows(catalog, "b", "shuffle", ["shuffle"])]
    old = [{**r, "test_task_version": 0, "train_task_version": 0}
           for r in run_rows(catalog, "c", "shuffle", ["shuffle"])]
    same = run_rows(catalog, "d", "shuffle", ["shuffle"], seed=1)
    boards = build_boards([_entry(tiny, "a"), _entry(small, "b"), _entry(old, "c"), _entry(same, "d")])
    members = sorted(sorted(e.entry.key for e in b.entries) for b in boards)
    assert members == [["a", "d"], ["b"], ["c"]]
    assert len({b.id for b in boards}) == 3


def test_an_entry_with_two_versions_of_a_task_reports_the_newest(catalog):
    new = run_rows(catalog, "m", "shuffle", ["shuffle"])
    old = [{**r, "test_task_version": 0, "run_id": "old"} for r in run_rows(catalog, "m", "shuffle", ["shuffle"], seed=5)]
    [board] = build_boards([_entry(new + old)])
    assert board.entries[0].score("shuffle", "shuffle").n == 1 and board.entries[0].dropped_rows == len(old)


def test_block_shares_accept_fractions_percents_and_mappings():
    assert block_share_list("[0.5, 0.25, 0.25, 0]") == [50.0, 25.0, 25.0, 0.0]
    assert block_share_list('{"1": 30, "0": 70}') == [70.0, 30.0]


def test_svg_escapes_labels_and_marks_not_run():
    svg = str(heatmap(["<b>x</b>"], ["t&t"], [[None]], "<script>alert(1)</script>"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg and "t&amp;t" in svg
    assert "not run" in svg
    bars = str(share_bars([("standard", [55.0, 45.0]), ("<i>", None)], "t"))
    assert "55%" in bars and "&lt;i&gt;" in bars and "not run" in bars


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * 3)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


def test_attention_png_round_trips_and_blanks_the_future():
    m = np.tril(np.ones((5, 5)))
    m[4, 0] = 0.0
    rgb = _decode_png(attention_png(m))
    assert rgb.shape == (5, 5, 3)
    assert (rgb[0, 1] == [243, 244, 246]).all()  # above the diagonal: blank
    assert (rgb[4, 1] == [240, 249, 33]).all() and (rgb[4, 0] == [13, 8, 135]).all()  # max bright, zero dark


@pytest.mark.parametrize("task", ["standard", "k2v2", "position-robustness"])
def test_example_roles_follow_the_layout(task, catalog):
    ds = build_dataset(task, "tiny", catalog.data_dir)
    ex = pick_example(ds.load("test"))
    marked = mark(ex, ds.spec.task)
    assert [t.id for t in marked] == ex["input_ids"]
    labelled = [t for t in marked if t.label is not None]
    assert labelled and all(t.role in ("query", "answer-slot") for t in labelled)
    assert [t.label for t in labelled] == [x for x in ex["labels"] if x != tokens.IGNORE]
    keys = {t.id for t in marked if t.role == "key"}
    values = {t.id for t in marked if t.role == "value"}
    assert len(keys) >= ex["num_kv_pairs"] and values
    assert {t.label for t in labelled} <= values  # every answer is a value shown in the context
    lo, hi = tokens.key_range(ds.spec.task.vocab_size)
    assert all(lo <= k < hi for k in keys) and not keys & values
    assert all(t.role == "special" for t in marked if t.id in (tokens.SEP, tokens.SEP_KV) and t.label is None)


def test_best_is_marked_only_where_it_singles_a_model_out():
    columns = [Column("3", name, name, name) for name in ("learned", "nobody", "tie")]
    scores = {"a": {"learned": 90.0, "nobody": 0.0, "tie": 50.0},
              "b": {"learned": 40.0, "nobody": 0.0, "tie": 50.0}}
    board = SimpleNamespace(entries=[
        SimpleNamespace(entry=SimpleNamespace(name=name),
                        score=lambda train, test, m=by_task: Score((m[train],)))
        for name, by_task in scores.items()])
    best = {row.entry.entry.name: row.best for row in leader_rows(board, columns)}
    assert best == {"a": [True, False, False], "b": [False, False, False]}


def test_an_earlier_preset_version_is_a_board_of_its_own_listed_after_the_current(catalog):
    current = run_rows(catalog, "new", "shuffle", ["shuffle"])
    digest = current[0]["train_task_hash"]
    older = [{**r, "train_task_hash": "0" * 64, "test_task_hash": "0" * 64}
             for r in run_rows(catalog, "old", "shuffle", ["shuffle"])]
    version_of = {digest: 2, "0" * 64: 1}
    boards = build_boards([_entry(older, "old"), _entry(older, "old2"), _entry(current, "new")],
                          lambda task, preset, h: version_of.get(h))
    assert [b.preset_version for b in boards] == [2, 1]  # the current version first, though smaller
    assert [sorted(e.entry.key for e in b.entries) for b in boards] == [["new"], ["old", "old2"]]
    assert "tiny v2" in boards[0].label and "tiny v1" in boards[1].label


def test_validation_accepts_results_of_an_earlier_version_of_the_preset(tmp_path):
    """small v2 changed training only: v1 results keep their board; a foreign hash is refused."""
    from mqarbench.leaderboard.catalog import TaskCatalog
    from mqarbench.leaderboard.validate import task_problems

    real = TaskCatalog(tmp_path)
    ref = real.ref("k4v8-shuffle", "small")
    assert sorted(ref.preset_versions.values()) == [1, 2] and ref.preset_versions[ref.content_hash] == 2
    [v1] = [h for h, v in ref.preset_versions.items() if v == 1]
    row = {"train_task": "k4v8-shuffle", "test_task": "k4v8-shuffle", "train_task_version": ref.version,
           "test_task_version": ref.version}
    assert task_problems(tmp_path, [{**row, "train_task_hash": v1, "test_task_hash": v1}], "small", real) == []
    assert real.preset_version("k4v8-shuffle", "small", v1) == 1
    bad = task_problems(tmp_path, [{**row, "train_task_hash": "f" * 64, "test_task_hash": v1}], "small", real)
    assert len(bad) == 1 and "train_task_hash" in bad[0] and "earlier version of the preset" in bad[0]
