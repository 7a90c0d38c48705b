"""Property tests of every task family, checked from the raw arrays with an independent decoder."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mqarbench.data import tokens
from mqarbench.data.generators import generate_cell
from mqarbench.data.spec import NgramSpec, PositionalSpec, PositionRobustnessSpec

GRID = {"seq_lens": [64, 128, 256], "drop_unfit": True}
FAST = settings(max_examples=25, deadline=None)


def positional(placement: str, **kw) -> PositionalSpec:
    return PositionalSpec(name="t", version=1, description="", family="positional", placement=placement,
                          seed=kw.pop("seed", 0), grid=kw.pop("grid", GRID), **kw)


def ngram(nk: int, nv: int, placement: str = "standard", **kw) -> NgramSpec:
    return NgramSpec(name="t", version=1, description="", family="ngram", placement=placement,
                     num_key_tokens=nk, num_value_tokens=nv, seed=kw.pop("seed", 0), grid=GRID, **kw)


def robustness(**kw) -> PositionRobustnessSpec:
    return PositionRobustnessSpec(name="t", version=1, description="", family="position_robustness",
                                  test_only=True, seed=kw.pop("seed", 0), grid=GRID, **kw)


def pick_cell(spec, data) -> tuple[int, int]:
    cells = spec.cells()
    return cells[data.draw(st.integers(0, len(cells) - 1))]


def pairs_of(spec, ids, starts):
    """(key tuple, value tuple) of each context pair, read from the tokens."""
    nk, nv = spec.key_tokens, spec.value_tokens
    if spec.family == "ngram":
        return [(tuple(ids[s + 1 : s + 1 + nk]), tuple(ids[s + 2 + nk : s + 2 + nk + nv])) for s in starts]
    return [((ids[s],), (ids[s + 1],)) for s in starts]


def check_common(spec, d, seq_len, n, split):
    """Invariants every family shares; returns the per-example structured positions."""
    rows = d.input_ids.shape[0]
    assert d.input_ids.shape == d.labels.shape == d.query_index.shape == (rows, seq_len)
    assert d.input_ids.dtype == d.labels.dtype == d.query_index.dtype == np.int32
    assert d.query_starts.shape == (rows, n)
    klo, khi = tokens.key_range(spec.vocab_size)
    vlo, vhi = tokens.value_range(spec.vocab_size)
    for r in range(rows):
        ids, labels, qidx = d.input_ids[r], d.labels[r], d.query_index[r]
        assert ids.min() >= 0 and ids.max() < spec.vocab_size
        pairs = pairs_of(spec, ids, d.pair_starts[r])
        key_tokens = {t for k, _ in pairs for t in k}
        assert all(klo <= t < khi for t in key_tokens)
        assert all(vlo <= t < vhi for _, v in pairs for t in v)
        lookup = {}
        for k, v in pairs:
            lookup.setdefault(k, set()).add(v)
        assert np.all(np.diff(d.query_starts[r]) > 0), "queries numbered by position"
        structured = set()
        for s in d.pair_starts[r]:
            structured |= set(range(s, s + spec.unit))
        for q, s in enumerate(d.query_starts[r]):
            structured |= set(range(s, s + (spec.unit if spec.family == "ngram" else 1)))
            key = tuple(ids[s + 1 : s + 1 + spec.key_tokens]) if spec.family == "ngram" else (ids[s],)
            assert key in lookup, "every query key occurs in the context"
            scored = np.flatnonzero(qidx == q)
            assert len(scored) == spec.value_tokens
            assert tuple(labels[scored]) in lookup[key], "a query's labels are its key's value"
        assert set(np.flatnonzero(qidx >= 0)) <= set(np.flatnonzero(labels != tokens.IGNORE))
        filler = [t for t in range(seq_len) if t not in structured]
        fill_ids = ids[filler]
        assert np.all(fill_ids >= tokens.FIRST_ID), "filler is never a reserved id"
        if not spec.filler_may_equal_key:
            assert not set(fill_ids.tolist()) & key_tokens, "filler never equals a key of the example"
        assert np.all(labels[filler] == tokens.IGNORE)
    return True


@FAST
@given(placement=st.sampled_from(["standard", "last", "shuffle"]), seed=st.integers(0, 2**31), data=st.data())
def test_positional_properties(placement, seed, data):
    spec = positional(placement, seed=seed)
    seq_len, n = pick_cell(spec, data)
    d = generate_cell(spec, "train", seq_len, n, 6)
    check_common(spec, d, seq_len, n, "train")
    starts = d.pair_starts
    if placement == "standard":
        assert np.all(starts == np.arange(n) * 2)
        assert np.all(d.query_starts >= 2 * n) and np.all((d.query_starts - 2 * n) % 2 == 0)
    else:
        assert np.all(d.query_starts >= seq_len // 2), "queries in the second half"
        assert np.all((d.query_starts - seq_len // 2) % 2 == 0)
    if placement == "last":
        assert np.all(np.sort(starts, axis=1) == seq_len // 2 - 2 * n + np.arange(n) * 2)
    if placement == "shuffle":
        assert np.all(starts % 2 == 0) and np.all(starts + 2 <= seq_len // 2)
        assert all(len(set(row)) == n for row in starts)


def test_shuffle_spreads_pairs_over_the_first_half():
    spec = positional("shuffle")
    d = generate_cell(spec, "train", 256, 4, 2000)
    slots = (d.pair_starts // 2).ravel()
    counts = np.bincount(slots, minlength=64)
    assert counts.min() > 0 and counts.max() < 2 * counts.mean(), "slots used about evenly"


def test_queries_follow_the_power_law():
    """The first key's query slot is drawn with p_i ~ i^(a-1), a = 0.01 (zoology's power law)."""
    spec = positional("standard")
    rows, n = 4000, 4
    d = generate_cell(spec, "test", 256, n, rows)
    first_key = d.input_ids[:, :1]  # standard: pair 0 sits at position 0
    query_keys = np.take_along_axis(d.input_ids, d.query_starts, axis=1)
    slot = (d.query_starts[query_keys == first_key] - 2 * n) // 2  # (rows,)
    weights = np.arange(1, (256 - 2 * n) // 2 + 1) ** (0.01 - 1)
    expected = weights / weights.sum()
    observed = np.bincount(slot, minlength=len(weights)) / rows
    assert np.all(np.abs(observed[:4] - expected[:4]) < 0.03)
    assert abs(observed[:20].sum() - expected[:20].sum()) < 0.04


@FAST
@given(kv=st.sampled_from([(1, 1), (1, 2), (2, 2), (4, 8), (3, 1)]),
       placement=st.sampled_from(["standard", "shuffle", "last"]), split=st.sampled_from(["train", "test"]),
       seed=st.integers(0, 2**31), data=st.data())
def test_ngram_properties(kv, placement, split, seed, data):
    nk, nv = kv
    spec = ngram(nk, nv, placement, seed=seed)
    seq_len, n = pick_cell(spec, data)
    d = generate_cell(spec, split, seq_len, n, 5)
    check_common(spec, d, seq_len, n, split)
    unit = 3 + nk + nv
    for r in range(5):
        ids, labels, qidx = d.input_ids[r], d.labels[r], d.query_index[r]
        for s in d.pair_starts[r]:
            assert ids[s] == tokens.SEP and ids[s + 1 + nk] == tokens.SEP_KV and ids[s + unit - 1] == tokens.SEP
        for q in d.query_starts[r]:
            assert ids[q] == tokens.SEP and ids[q + 1 + nk] == tokens.SEP_KV and ids[q + unit - 1] == tokens.SEP
            assert np.all(ids[q + 2 + nk : q + 2 + nk + nv] == tokens.MASK), "values masked in queries"
            closing = q + unit - 2  # the last MASK predicts the closing SEP, in train only
            assert labels[closing] == (tokens.SEP if split == "train" else tokens.IGNORE)
            assert qidx[closing] == -1, "the closing-SEP label is not part of the scored query"
        if placement == "standard":
            assert np.all(d.pair_starts[r] == np.arange(n) * unit)
        else:
            assert np.all(d.query_starts[r] >= seq_len // 2)
            assert np.all(d.pair_starts[r] + unit <= seq_len // 2)


@FAST
@given(seed=st.integers(0, 2**31), data=st.data())
def test_k2v2_robustness_keys_share_their_last_token(seed, data):
    spec = ngram(2, 2, shared_last_key_token=True, test_only=True, seed=seed)
    seq_len, n = pick_cell(spec, data)
    d = generate_cell(spec, "test", seq_len, n, 5)
    check_common(spec, d, seq_len, n, "test")
    for r in range(5):
        keys = [k for k, _ in pairs_of(spec, d.input_ids[r], d.pair_starts[r])]
        assert len({k[1] for k in keys}) == 1, "one shared last token"
        assert len({k[0] for k in keys}) == n, "first tokens tell the keys apart"
        assert keys[0][1] not in {k[0] for k in keys}


@FAST
@given(seed=st.integers(0, 2**31), data=st.data())
def test_position_robustness_blocks(seed, data):
    spec = robustness(seed=seed)
    seq_len, n = pick_cell(spec, data)
    d = generate_cell(spec, "test", seq_len, n, 5)
    check_common(spec, d, seq_len, n, "test")
    blocks, block_len = 4, seq_len // 8
    assert d.num_blocks == blocks and d.candidates.shape == (5, n * blocks)
    for r in range(5):
        ids = d.input_ids[r]
        starts = d.pair_starts[r].reshape(blocks, n)
        per_block = []
        for b in range(blocks):
            assert np.all((starts[b] >= b * block_len) & (starts[b] + 2 <= (b + 1) * block_len))
            per_block.append({ids[s]: ids[s + 1] for s in starts[b]})
        assert all(set(m) == set(per_block[0]) for m in per_block), "every block holds the same keys"
        values = [v for m in per_block for v in m.values()]
        assert len(set(values)) == len(values), "distinct values"
        cands = d.candidates[r].reshape(n, blocks)
        for q, s in enumerate(d.query_starts[r]):
            key = ids[s]
            assert list(cands[q]) == [per_block[b][key] for b in range(blocks)]
            assert d.labels[r, s] == per_block[0][key], "label is the block-0 value"


def test_paper_filler_option_allows_keys():
    spec = positional("standard", filler_may_equal_key=True, vocab_size=16, grid={"cells": [[64, 2]]})
    d = generate_cell(spec, "train", 64, 2, 200)
    keys = d.input_ids[:, [0, 2]]
    filler = d.input_ids[:, 4:]
    assert np.any(filler == keys[:, :1]), "the released generators' filler may repeat a key"
    spec_fixed = spec.model_copy(update={"filler_may_equal_key": False})
    check_common(spec_fixed, generate_cell(spec_fixed, "train", 64, 2, 200), 64, 2, "train")


def test_same_spec_same_arrays_and_cells_are_independent():
    spec = ngram(2, 2, seed=7)
    a, b = generate_cell(spec, "train", 128, 8, 50), generate_cell(spec, "train", 128, 8, 50)
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.labels, b.labels)
    other_split = generate_cell(spec, "valid", 128, 8, 50)
    assert not np.array_equal(a.input_ids, other_split.input_ids)
    reseeded = generate_cell(ngram(2, 2, seed=8), "train", 128, 8, 50)
    assert not np.array_equal(a.input_ids, reseeded.input_ids)
