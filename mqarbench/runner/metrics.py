"""Metrics of one evaluated grid cell, as pure functions over integer arrays.

A query is right only if every one of its labelled positions is predicted exactly (argmax over
the whole vocabulary); the task score is the unweighted mean of the per-cell query accuracies.
Positions are matched to queries through ``query_index`` (-1: not part of any query).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqarbench.results.score import Score, over_seeds


@dataclass
class CellScore:
    """Counts for one (seq_len, num_kv_pairs) cell; accumulate batches with ``add``."""

    seq_len: int
    num_kv_pairs: int
    num_examples: int = 0
    num_queries: int = 0
    queries_correct: int = 0
    num_tokens: int = 0
    tokens_correct: int = 0
    examples_correct: int = 0
    block_counts: list[int] | None = None  # position-robustness: answers taken from each block

    def add(self, other: "CellScore") -> None:
        for name in ("num_examples", "num_queries", "queries_correct", "num_tokens",
                     "tokens_correct", "examples_correct"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.block_counts is not None:
            mine = self.block_counts or [0] * len(other.block_counts)
            self.block_counts = [a + b for a, b in zip(mine, other.block_counts)]

    @property
    def query_accuracy(self) -> float:
        return 100.0 * self.queries_correct / max(1, self.num_queries)

    @property
    def token_accuracy(self) -> float:
        return 100.0 * self.tokens_correct / max(1, self.num_tokens)

    @property
    def example_exact_match(self) -> float:
        return 100.0 * self.examples_correct / max(1, self.num_examples)


def query_correct(pred: np.ndarray, labels: np.ndarray, query_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (example, query): (right, present), both (N, Q) bool; right = every value token exact."""
    n = pred.shape[0]
    q = int(query_index.max()) + 1 if query_index.size and query_index.max() >= 0 else 0
    rows, cols = np.nonzero(query_index >= 0)  # labelled query positions
    qi = query_index[rows, cols]
    wrong = np.zeros((n, q), dtype=np.int64)
    seen = np.zeros((n, q), dtype=np.int64)
    np.add.at(wrong, (rows, qi), (pred[rows, cols] != labels[rows, cols]).astype(np.int64))
    np.add.at(seen, (rows, qi), 1)
    present = seen > 0
    return present & (wrong == 0), present


def first_prediction(pred: np.ndarray, query_index: np.ndarray) -> np.ndarray:
    """The prediction at each query's first labelled position, (N, Q); -1 where absent."""
    n = pred.shape[0]
    q = int(query_index.max()) + 1 if query_index.size and query_index.max() >= 0 else 0
    rows, cols = np.nonzero(query_index >= 0)  # row-major: earliest position first
    keys = rows * max(q, 1) + query_index[rows, cols]
    _, first = np.unique(keys, return_index=True)
    out = np.full((n, q), -1, dtype=np.int64)
    out[rows[first], query_index[rows[first], cols[first]]] = pred[rows[first], cols[first]]
    return out


def block_hits(first_pred: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position-robustness. ``first_pred`` (N, Q), ``candidates`` (N, Q, B) (-1 padding).

    Returns (right (N, Q): the prediction equals the candidate of any block,
    block (N, Q): index of the matching block, -1 for none).
    """
    match = (candidates == first_pred[:, :, None]) & (candidates >= 0)  # (N, Q, B)
    right = match.any(-1)
    return right, np.where(right, match.argmax(-1), -1)


def score_cell(pred: np.ndarray, labels: np.ndarray, query_index: np.ndarray, seq_len: int,
               num_kv_pairs: int, candidates: np.ndarray | None = None) -> CellScore:
    """Score one batch of a cell: ``pred``, ``labels``, ``query_index`` are (N, L) integer arrays.

    With ``candidates`` (N, Q, B), a query is right when its (single-token) answer equals any
    block's candidate, and the block each answer came from is counted.
    """
    present_pos = query_index >= 0
    if candidates is None:
        right, present = query_correct(pred, labels, query_index)
        blocks = None
    else:
        first = first_prediction(pred, query_index)
        _, present = query_correct(pred, labels, query_index)
        right, block = block_hits(first, candidates[:, : first.shape[1]])
        right &= present
        blocks = np.bincount(block[right], minlength=candidates.shape[-1]).tolist()
    example_right = (right | ~present).all(axis=1) & present.any(axis=1)
    return CellScore(
        seq_len=seq_len, num_kv_pairs=num_kv_pairs, num_examples=int(pred.shape[0]),
        num_queries=int(present.sum()), queries_correct=int(right.sum()),
        num_tokens=int(present_pos.sum()),
        tokens_correct=int(((pred == labels) & present_pos).sum()),
        examples_correct=int(example_right.sum()), block_counts=blocks)


def block_shares(counts: list[int]) -> list[float]:
    """Share of the answers taken from each block, in block order (zeros if none matched)."""
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def task_scores(cells: list[CellScore]) -> dict[str, float]:
    """Unweighted means over cells, in percent: the task's overall scores."""
    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")
    return {"query_accuracy": mean([c.query_accuracy for c in cells]),
            "token_accuracy": mean([c.token_accuracy for c in cells]),
            "example_exact_match": mean([c.example_exact_match for c in cells])}


def merged_block_counts(cells: list[CellScore]) -> list[int] | None:
    merged = None
    for c in cells:
        if c.block_counts is not None:
            merged = [a + b for a, b in zip(merged or [0] * len(c.block_counts), c.block_counts)]
    return merged


def spread(values: list[float]) -> Score:
    """Mean and sample standard deviation over seeds (std 0 for one value)."""
    return over_seeds(values)
