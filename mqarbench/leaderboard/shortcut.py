"""The shortcut score: one row of numbers per model summarising the paper's diagnosis.

- Positional transfer ratio = mean(Std-Last, Std-Shuffle) / Shuffle (in-domain). How much of
  what a model recalls when trained and tested on shuffled positions survives when it is
  trained on the standard layout (pairs first) and the pairs move. Near 1: it recalls by
  content; near 0: it learned where the pairs sit (the positional shortcut).
- N-gram transfer ratio = (K1V1 trained, tested on K2V2) / (K2V2 in-domain). Near 1: the
  recall carries over to two-token keys and values; near 0: it learned one-token patterns
  (the n-gram shortcut).
- For selective-SSM models, from the hidden-attention maps the runner saves
  (``attention/<test task>.npz``): the share of a query's attention mass on its true pair
  (key and value positions) against the share on the first positions, where the standard
  layout puts the pairs (the paper's Fig. 4).
A ratio is None where an experiment did not run or the in-domain score is 0.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqarbench.data.tokens import IGNORE
from mqarbench.errors import UserError

POSITIONAL = (("standard", "last"), ("standard", "shuffle")), ("shuffle", "shuffle")
NGRAM = (("k1v1", "k2v2"),), ("k2v2", "k2v2")
ATTENTION_CELL = ("standard", "last")  # the maps Fig. 4 reads: trained on standard, tested on last


def transfer_ratio(transfers: list[float | None], in_domain: float | None) -> float | None:
    """mean(transfers) / in_domain; None where any is missing or in_domain is 0."""
    if in_domain is None or in_domain <= 0 or not transfers or any(t is None for t in transfers):
        return None
    return statistics.fmean(transfers) / in_domain


@dataclass(frozen=True)
class ShortcutScore:
    positional: float | None
    ngram: float | None
    attention_pair: float | None = None  # percent of a query's hidden attention on its true pair
    attention_first: float | None = None  # ... and on the first positions (ATTENTION_CELL's maps)

    @classmethod
    def of(cls, score, shares=None) -> "ShortcutScore":
        """From ``score(train, test) -> Score | None`` (a board entry's ``score``) and the entry's
        ``attention_shares()`` ((pair, first) Scores, or None)."""
        def mean(pair):
            result = score(*pair)
            return None if result is None else result.mean

        ratios = [transfer_ratio([mean(p) for p in transfers], mean(in_domain))
                  for transfers, in_domain in (POSITIONAL, NGRAM)]
        return cls(*ratios, *((None, None) if shares is None else (shares[0].mean, shares[1].mean)))


def pair_positions(input_ids: np.ndarray, labels: np.ndarray, ignore: int = IGNORE) -> list[tuple[int, int]]:
    """(query position t, its key's position j) for one positional-task example: j < t is where
    the query's key token stands followed by the query's label (the value)."""
    pairs = []
    for t in np.flatnonzero(labels != ignore):
        matches = [j for j in range(t - 1) if input_ids[j] == input_ids[t] and input_ids[j + 1] == labels[t]]
        if matches:
            pairs.append((int(t), matches[-1]))
    return pairs


def attention_shares(maps: np.ndarray, input_ids: np.ndarray, labels: np.ndarray,
                     ignore: int = IGNORE) -> tuple[float, float]:
    """(true-pair share, first-positions share) of the hidden attention of query rows, averaged
    over queries and layers. maps (n_layers, L, L), row t over columns s <= t. A row's mass
    counts the context only (s < t). The first positions are the 2 n the standard layout gives
    the n pairs; positions of the query's own pair count only as the pair."""
    pairs = pair_positions(input_ids, labels, ignore)
    if not pairs:
        raise UserError("attention map: no query whose key/value pair is in its context "
                        "(only positional tasks have single-token pairs)")
    first = 2 * len(pairs)
    pair_shares, first_shares = [], []
    for layer in np.abs(maps.astype(np.float64)):
        for t, j in pairs:
            row = layer[t, :t]
            total = row.sum()
            if total <= 0:
                continue
            pair_shares.append((row[j] + row[j + 1]) / total)
            head = row[:first].sum() - sum(row[s] for s in (j, j + 1) if s < first)
            first_shares.append(head / total)
    if not pair_shares:
        return 0.0, 0.0
    return float(np.mean(pair_shares)), float(np.mean(first_shares))


def load_attention_shares(path: Path, ignore: int = IGNORE) -> tuple[float, float]:
    """``attention_shares`` of a runner's ``attention/<task>.npz``."""
    try:
        with np.load(path) as data:
            return attention_shares(data["maps"], data["input_ids"], data["labels"], ignore)
    except (OSError, KeyError, ValueError) as err:
        raise UserError(f"{path}: not a hidden-attention file ({err}); re-run the model to save it") from None
