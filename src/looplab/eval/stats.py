"""Intervals over seeds and examples: a two-level bootstrap for exact-match accuracies.

A group of runs (one variant, S seeds) is scored on C cells (task, length); cell c of seed s has
n[s, c] examples of which a share acc[s, c] is right. A replicate draws S seeds with replacement,
then redraws the examples of every drawn cell with replacement. Redrawing n right/wrong outcomes
with replacement gives a Binomial(n, acc) count, so the inner level is one numpy binomial draw per
cell instead of an index array. The figure of interest (a weighted mean of floor-normalised cell
accuracies, averaged over the drawn seeds) is recomputed on each replicate, and the 95% interval is
the 2.5th and 97.5th percentile of the replicates. All randomness comes from one seeded
`numpy.random.Generator`, so a report is reproducible.

A difference between two groups (a variant against the baseline) resamples each group on its own
and takes the percentiles of the replicate differences. Its verdict is "helps" when the whole
interval is above zero, "hurts" when it is below, and "no difference at this budget" otherwise.
Figures that are not accuracies (tokens to competence, time per token) resample seeds only.

Letters: B replicates, S seeds, C cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REPLICATES = 4000  # bootstrap replicates per interval
LEVEL = 0.95  # interval coverage
SEED = 12345  # the bootstrap's own seed: the same report from the same runs


@dataclass(frozen=True, kw_only=True)
class Cells:
    """The accuracy cells of one group: acc and n per (seed, cell), a floor and a weight per cell."""

    acc: np.ndarray  # (S, C) exact match
    n: np.ndarray  # (S, C) examples scored
    floor: np.ndarray  # (C,) chance floor of each cell
    weight: np.ndarray  # (C,) weight of each cell in the figure; sums to 1

    def __post_init__(self) -> None:
        if self.acc.ndim != 2 or self.acc.shape != self.n.shape or self.acc.shape[1:] != self.floor.shape \
                or self.floor.shape != self.weight.shape:
            raise ValueError(f"cells need acc and n of shape (S, C) and floor, weight of shape (C,); got "
                             f"{self.acc.shape}, {self.n.shape}, {self.floor.shape}, {self.weight.shape}")

    @property
    def seeds(self) -> int:
        return self.acc.shape[0]


@dataclass(frozen=True)
class Interval:
    mean: float  # the figure on the data as measured (mean over seeds)
    lo: float  # lower end of the 95% interval
    hi: float  # upper end

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def figure(acc: np.ndarray, floor: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted mean of floor-normalised accuracies over the last axis (cells), then over seeds."""
    norm = (acc - floor) / np.where(floor < 1, 1 - floor, 1.0)
    return (norm * weight).sum(axis=-1).mean(axis=-1)


def replicates(cells: Cells, rng: np.random.Generator, b: int = REPLICATES) -> np.ndarray:
    """(B,) the figure on B two-level bootstrap replicates."""
    pick = rng.integers(0, cells.seeds, size=(b, cells.seeds))  # (B, S) seeds drawn with replacement
    n = cells.n[pick]  # (B, S, C)
    acc = rng.binomial(n, cells.acc[pick]) / n  # the examples of each drawn cell, redrawn
    return figure(acc, cells.floor, cells.weight)


def seed_replicates(values: Sequence[float], rng: np.random.Generator, b: int = REPLICATES) -> np.ndarray:
    """(B,) the mean of per-seed values on B replicates that resample the seeds."""
    v = np.asarray(values, dtype=np.float64)
    return v[rng.integers(0, len(v), size=(b, len(v)))].mean(axis=1)


def interval(point: float, reps: np.ndarray, level: float = LEVEL) -> Interval:
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(point), float(lo), float(hi))


def accuracy_interval(cells: Cells, seed: int = SEED) -> Interval:
    """The group's figure with its 95% interval over seeds and examples."""
    point = float(figure(cells.acc, cells.floor, cells.weight))
    return interval(point, replicates(cells, np.random.default_rng(seed)))


def difference(a: Cells, b: Cells, seed: int = SEED) -> Interval:
    """Figure of `a` minus figure of `b`, each group resampled on its own."""
    rng = np.random.default_rng(seed)
    point = float(figure(a.acc, a.floor, a.weight) - figure(b.acc, b.floor, b.weight))
    return interval(point, replicates(a, rng) - replicates(b, rng))


def seed_difference(a: Sequence[float], b: Sequence[float], seed: int = SEED) -> Interval:
    """Mean of `a` minus mean of `b` over seeds, each resampled on its own."""
    rng = np.random.default_rng(seed)
    return interval(float(np.mean(a) - np.mean(b)), seed_replicates(a, rng) - seed_replicates(b, rng))


def seed_interval(values: Sequence[float], seed: int = SEED) -> Interval:
    return interval(float(np.mean(values)), seed_replicates(values, np.random.default_rng(seed)))


def verdict(diff: Interval, higher_is_better: bool = True) -> str:
    """helps / hurts / no difference at this budget, from where the interval of the difference lies."""
    if diff.lo > 0 or diff.hi < 0:
        better = (diff.lo > 0) == higher_is_better
        return "helps" if better else "hurts"
    return "no difference at this budget"
