"""Vectorised sampling primitives: every function works on all examples of a cell at once."""

from __future__ import annotations

import numpy as np


def distinct_tokens(rng: np.random.Generator, rows: int, k: int, low: int, high: int) -> np.ndarray:
    """(rows, k) int32 ids from ``[low, high)``, distinct within each row, uniform over such tuples.

    Draws with replacement, then redraws the repeats until none is left: with k much smaller
    than the range this takes a couple of rounds, and because the procedure treats every id
    alike, the result is uniform over ordered distinct tuples.
    """
    out = rng.integers(low, high, size=(rows, k), dtype=np.int32)
    if k < 2:
        return out
    while True:
        order = np.argsort(out, axis=1, kind="stable")
        ordered = np.take_along_axis(out, order, axis=1)
        repeat = ordered[:, 1:] == ordered[:, :-1]  # (rows, k-1): a later copy of a smaller-index id
        if not repeat.any():
            return out
        r, c = np.nonzero(repeat)
        cols = order[r, c + 1]
        out[r, cols] = rng.integers(low, high, size=len(r), dtype=np.int32)


def top_k_slots(rng: np.random.Generator, weights: np.ndarray, rows: int, k: int) -> np.ndarray:
    """(rows, k) slot indices drawn without replacement with probability ~ ``weights``.

    Exponential races (the Gumbel-top-k trick in another form): slot i finishes at E_i / w_i
    with E_i ~ Exp(1); the k earliest finishers are exactly a sequential draw without
    replacement, and the columns come out in draw order.
    """
    slots = weights.shape[0]
    times = rng.standard_exponential(size=(rows, slots), dtype=np.float32)  # (rows, slots)
    times *= (1.0 / weights).astype(np.float32)
    if k < slots:
        top = np.argpartition(times, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(slots), (rows, slots))
    order = np.argsort(np.take_along_axis(times, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def power_law_slots(rng: np.random.Generator, rows: int, slots: int, k: int, a: float) -> np.ndarray:
    """k distinct query slots per row with p_i ~ i^(a-1), i = 1..slots (zoology's power law)."""
    weights = np.arange(1, slots + 1, dtype=np.float64) ** (a - 1.0)
    return top_k_slots(rng, weights, rows, k)


def uniform_slots(rng: np.random.Generator, rows: int, slots: int, k: int) -> np.ndarray:
    """k distinct slots per row, uniformly at random, in random order."""
    return top_k_slots(rng, np.ones(slots), rows, k)


def _count_at_most(sorted_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each ``values[r, j]``, how many of ``sorted_rows[r]`` are <= it.

    One comparison pass per column of ``sorted_rows`` into reused buffers: for the few dozen
    ids a row avoids this beats a gather-based binary search, whose random reads miss the cache.
    """
    k = sorted_rows.shape[1]
    count = np.zeros(values.shape, dtype=np.uint8 if k < 256 else np.int32)
    hit = np.empty(values.shape, dtype=bool)
    for j in range(k):
        np.less_equal(sorted_rows[:, j : j + 1], values, out=hit)
        np.add(count, hit, out=count, casting="unsafe")
    return count


def filler(rng: np.random.Generator, shape: tuple[int, int], low: int, high: int,
           avoid: np.ndarray | None) -> np.ndarray:
    """(rows, L) int32 noise ids from ``[low, high)``, never equal to ``avoid[r]`` (distinct ids).

    One draw: pick u uniformly among the allowed ids' ranks and map rank u to the u-th id not in
    ``avoid`` (u plus the number of avoided ids at or below it), so no rejection loop is needed.
    """
    if avoid is None:
        return rng.integers(low, high, size=shape, dtype=np.int32)
    k = avoid.shape[1]
    small = np.int16 if high - low <= np.iinfo(np.int16).max else np.int32  # halves memory traffic
    gaps = (np.sort(avoid - low, axis=1) - np.arange(k)).astype(small)  # (rows, k), non-decreasing
    u = rng.integers(0, high - low - k, size=shape, dtype=small)
    out = u.astype(np.int32)
    out += _count_at_most(gaps, u)
    out += low
    return out
