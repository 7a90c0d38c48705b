"""A metric over seeds: the one summary the CLI tables and the leaderboard both print."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """Values of one metric (percent), one per seed; mean and sample std over them."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else float("nan")

    @property
    def std(self) -> float:
        if not self.values:
            return float("nan")
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def __str__(self) -> str:
        """The terminal's form: one decimal, ``-`` where nothing ran."""
        if self.n == 0:
            return "-"
        return f"{self.mean:.1f}" if self.n == 1 else f"{self.mean:.1f} ± {self.std:.1f} ({self.n})"

    def text(self) -> str:
        """The site's form: two decimals."""
        return f"{self.mean:.2f}" if self.n == 1 else f"{self.mean:.2f} ± {self.std:.2f} (n={self.n})"


NOISE_MARGIN = 5.0  # points: a difference smaller than this (or two combined stds) is noise


def clearly_above(a: Score, b: Score, margin: float = NOISE_MARGIN) -> bool:
    """a beats b by more than noise: ``margin`` points, or two combined stds if seeds vary."""
    return a.mean - b.mean > max(margin, 2 * math.hypot(a.std, b.std))


def over_seeds(values: list[float | None]) -> Score:
    """The Score of ``values``, leaving out runs that recorded none (None or NaN)."""
    return Score(tuple(float(v) for v in values if v is not None and not math.isnan(v)))
