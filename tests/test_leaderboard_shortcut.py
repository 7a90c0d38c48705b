"""The shortcut score on hand-made numbers: transfer ratios and hidden-attention shares."""

import numpy as np
import pytest

from mqarbench.errors import UserError
from mqarbench.leaderboard.boards import Score
from mqarbench.leaderboard.shortcut import (
    ShortcutScore, attention_shares, load_attention_shares, pair_positions, transfer_ratio)

I = -100  # noqa: E741 - the unscored label


def test_transfer_ratio():
    assert transfer_ratio([15.0, 25.0], 80.0) == pytest.approx(0.25)
    assert transfer_ratio([None, 25.0], 80.0) is None
    assert transfer_ratio([10.0], 0.0) is None and transfer_ratio([10.0], None) is None


def test_score_of_a_board_entry():
    table = {("standard", "last"): 15.44, ("standard", "shuffle"): 22.37, ("shuffle", "shuffle"): 60.0,
             ("k1v1", "k2v2"): 30.0, ("k2v2", "k2v2"): 90.0}

    def score(train, test):
        return Score((table[train, test],)) if (train, test) in table else None

    shortcut = ShortcutScore.of(score)
    assert shortcut.positional == pytest.approx((15.44 + 22.37) / 2 / 60.0)
    assert shortcut.ngram == pytest.approx(1 / 3)
    del table["k1v1", "k2v2"]
    assert ShortcutScore.of(score).ngram is None


# Example: pairs (7 8) at 2-3 and (5 6) at 4-5 after noise, queries 5 at 7 and 7 at 9.
IDS = np.array([1, 2, 7, 8, 5, 6, 3, 5, 4, 7])
LABELS = np.array([I, I, I, I, I, I, I, 6, I, 8])


def test_pair_positions_find_the_key_followed_by_the_value():
    assert pair_positions(IDS, LABELS) == [(7, 4), (9, 2)]


def test_attention_shares_by_hand():
    maps = np.zeros((2, 10, 10), dtype=np.float32)
    # layer 0: each query looks only at its own pair -> pair share 1, first share 0
    maps[0, 7, 4] = maps[0, 7, 5] = 1.0
    maps[0, 9, 2] = maps[0, 9, 3] = 1.0
    # layer 1: both queries put all their context mass on positions 0 and 1 (the first 2n = 4
    # positions, outside their pairs) -> pair share 0, first share 1; self-attention is ignored
    maps[1, 7, 0] = maps[1, 9, 1] = 2.0
    maps[1, 7, 7] = maps[1, 9, 9] = 5.0
    pair, first = attention_shares(maps, IDS, LABELS)
    assert pair == pytest.approx(0.5) and first == pytest.approx(0.5)
    # query 9's pair (2, 3) lies in the first positions: it counts only as the pair
    only_pair = np.zeros((1, 10, 10))
    only_pair[0, 9, 2] = 1.0
    only_pair[0, 7, 0] = 1.0
    assert attention_shares(only_pair, IDS, LABELS) == pytest.approx((0.5, 0.5))


def test_no_pair_in_context_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no query"):
        attention_shares(np.zeros((1, 4, 4)), np.array([1, 2, 3, 4]), np.array([I, I, I, 9]))
    bad = tmp_path / "last.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="last.npz: not a hidden-attention file"):
        load_attention_shares(bad)


def test_load_attention_shares_from_a_runner_file(tmp_path):
    path = tmp_path / "last.npz"
    maps = np.zeros((1, 10, 10), dtype=np.float16)
    maps[0, 7, 4] = maps[0, 9, 2] = 1.0
    np.savez_compressed(path, maps=maps, input_ids=IDS.astype(np.int32), labels=LABELS.astype(np.int32))
    assert load_attention_shares(path) == pytest.approx((1.0, 0.0))


def test_board_entry_averages_the_shares_of_reported_runs_with_maps(tmp_path):
    import pyarrow as pa

    from mqarbench.leaderboard.boards import BoardEntry
    from mqarbench.leaderboard.sources import Entry

    maps = np.zeros((1, 10, 10), dtype=np.float16)
    maps[0, 7, 4] = maps[0, 9, 2] = 1.0  # seed 0: all on the true pairs
    half = maps.copy()
    half[0, 7, 0] = half[0, 9, 0] = 1.0  # seed 1: half on the first positions
    run_dirs = {}
    for run_id, m in (("s0", maps), ("s1", half), ("s2", None)):  # s2 saved no map
        run_dirs[run_id] = tmp_path / run_id
        (run_dirs[run_id] / "attention").mkdir(parents=True)
        if m is not None:
            np.savez_compressed(run_dirs[run_id] / "attention" / "last.npz", maps=m,
                                input_ids=IDS.astype(np.int32), labels=LABELS.astype(np.int32))
    rows = pa.table({"run_id": ["s0", "s1", "s2", "s0"], "train_task": ["standard"] * 4,
                     "test_task": ["last", "last", "last", "shuffle"], "slice": ["overall"] * 4})
    entry = BoardEntry(Entry("m", "m", rows, run_dirs=run_dirs), rows)
    pair, first = entry.attention_shares()
    assert pair.values == pytest.approx((100.0, 50.0)) and first.values == pytest.approx((0.0, 50.0))
    assert entry.attention_shares("shuffle", "last") is None  # no run trained on shuffle
    assert ShortcutScore.of(lambda *_: None, (pair, first)).attention_pair == pytest.approx(75.0)
