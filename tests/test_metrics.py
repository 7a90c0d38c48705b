"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mqarbench.runner.metrics import (CellScore, block_hits, block_shares, first_prediction,
                                      query_correct, score_cell, spread, task_scores)

# Two examples of length 8. Example 0: query 0 has a two-token value at positions 2-3, query 1 one
# token at 6. Example 1: one two-token query at positions 4-5; position 7 is the closing-SEP label
# (labelled, but part of no query).
LABELS = np.array([[-100, -100, 11, 12, -100, -100, 13, -100],
                   [-100, -100, -100, -100, 21, 22, -100, 3]])
QI = np.array([[-1, -1, 0, 0, -1, -1, 1, -1],
               [-1, -1, -1, -1, 0, 0, -1, -1]])


def test_all_right():
    pred = np.where(LABELS >= 0, LABELS, 0)
    s = score_cell(pred, LABELS, QI, 8, 2)
    assert (s.num_queries, s.queries_correct, s.num_tokens, s.tokens_correct) == (3, 3, 5, 5)
    assert s.query_accuracy == 100 and s.example_exact_match == 100


def test_multi_token_value_with_one_wrong_token_is_wrong():
    pred = np.where(LABELS >= 0, LABELS, 0)
    pred[0, 3] = 99  # second token of example 0's first value
    right, present = query_correct(pred, LABELS, QI)
    assert right.tolist() == [[False, True], [True, False]]
    assert present.tolist() == [[True, True], [True, False]]
    s = score_cell(pred, LABELS, QI, 8, 2)
    assert s.queries_correct == 2 and s.num_queries == 3
    assert s.tokens_correct == 4 and s.num_tokens == 5
    assert s.examples_correct == 1  # example 1 still fully right
    assert math.isclose(s.query_accuracy, 200 / 3)


def test_closing_sep_label_is_not_scored():
    pred = np.where(LABELS >= 0, LABELS, 0)
    pred[1, 7] = 0  # the training-only SEP label wrong: no metric moves
    s = score_cell(pred, LABELS, QI, 8, 2)
    assert (s.queries_correct, s.tokens_correct, s.examples_correct) == (3, 5, 2)


def test_task_score_is_unweighted_mean_over_cells():
    a = CellScore(64, 2, num_examples=10, num_queries=100, queries_correct=100, num_tokens=100,
                  tokens_correct=100, examples_correct=10)
    b = CellScore(128, 8, num_examples=10, num_queries=400, queries_correct=100, num_tokens=400,
                  tokens_correct=200, examples_correct=0)
    scores = task_scores([a, b])
    assert scores["query_accuracy"] == pytest.approx((100 + 25) / 2)  # not 200/500
    assert scores["token_accuracy"] == pytest.approx((100 + 50) / 2)
    assert scores["example_exact_match"] == pytest.approx(50)


def test_position_robustness_any_block_and_shares():
    # 3 examples, 2 queries, 4 blocks; one value token per query at positions 1 and 3.
    labels = np.array([[-100, 5, -100, 6]] * 3)
    qi = np.array([[-1, 0, -1, 1]] * 3)
    cand = np.array([[[5, 7, 8, 9], [6, 10, 11, 12]]] * 3)  # (N, Q, B): block 0 holds the labels
    pred = np.array([[0, 5, 0, 10],    # block 0, block 1
                     [0, 9, 0, 12],    # block 3, block 3
                     [0, 4, 0, 11]])   # no block, block 2
    first = first_prediction(pred, qi)
    assert first.tolist() == [[5, 10], [9, 12], [4, 11]]
    right, block = block_hits(first, cand)
    assert right.tolist() == [[True, True], [True, True], [False, True]]
    assert block.tolist() == [[0, 1], [3, 3], [-1, 2]]
    s = score_cell(pred, labels, qi, 4, 2, candidates=cand)
    assert s.queries_correct == 5 and s.num_queries == 6
    assert s.block_counts == [1, 1, 1, 2]
    assert block_shares(s.block_counts) == [0.2, 0.2, 0.2, 0.4]
    assert s.examples_correct == 2


def test_block_counts_accumulate_over_batches():
    s = CellScore(64, 2)
    s.add(CellScore(64, 2, num_queries=2, queries_correct=1, block_counts=[1, 0]))
    s.add(CellScore(64, 2, num_queries=2, queries_correct=2, block_counts=[0, 2]))
    assert s.block_counts == [1, 2] and s.queries_correct == 3 and s.num_queries == 4
    assert block_shares([0, 0]) == [0.0, 0.0]


def test_spread_over_seeds():
    s = spread([80.0, 90.0, None])
    assert (s.mean, s.n) == (85.0, 2) and s.std == pytest.approx(7.0710678)
    assert str(s) == "85.0 ± 7.1 (2)"
    assert str(spread([42.0])) == "42.0" and str(spread([])) == "-"
