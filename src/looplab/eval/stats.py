"""Intervals over seeds and examples: a two-level bootstrap for accuracies, and (below) paired,
hierarchical intervals from per-example outcomes with a Holm adjustment over a report's verdicts.

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
from scipy.stats import beta

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


# --- per-example outcomes: hierarchical, paired intervals -------------------------------------
# Letters here: S seeds, N problems of a cell (the same N problems for every seed and every arm).
#
# A cell of one arm is an (S, N) 0/1 matrix of answer outcomes (the grid cell's `outcomes`, one
# row per seed). Seeds and problems are crossed, so a replicate draws seeds and problems jointly
# (weights from one multinomial draw each) and adds the two deviations they cause: the mean of the
# drawn seeds' accuracies and the mean of the drawn problems' accuracies, less the point. (The mean
# of the drawn submatrix would add a cross term that counts the per-example noise a third time and
# overcovers.) Seed weights are widened by sqrt(S / (S - 1)), the small-sample correction of the
# bootstrap variance, which matters at 3 seeds. A comparison draws the problems once for both arms
# (a paired difference: what the problems share cancels) and the seeds of each arm on its own. A
# cell's interval is never narrower than the Jeffreys interval of its pooled count, so 0% and 100%
# cells keep a width. Three seeds cannot show a mode no seed fell into: `seed_summary` says how
# many seeds extrapolate, beside the interval.

EXTRAPOLATES = 0.9  # a seed "extrapolates" at a cell where its accuracy is at least this


@dataclass(frozen=True, kw_only=True)
class Outcomes:
    """The per-example outcomes of one arm: a (S, N_c) 0/1 matrix per cell, a floor and a weight per cell."""

    cells: tuple[np.ndarray, ...]  # C matrices (S, N_c): 1 where seed s answered problem n right
    floor: np.ndarray  # (C,) chance floor of each cell
    weight: np.ndarray  # (C,) weight of each cell in the figure; sums to 1

    def __post_init__(self) -> None:
        seeds = {x.shape[0] for x in self.cells if x.ndim == 2}
        if len(seeds) != 1 or any(x.ndim != 2 for x in self.cells) \
                or self.floor.shape != (len(self.cells),) or self.weight.shape != self.floor.shape:
            raise ValueError(f"outcomes need C matrices (S, N_c) with one S and floor, weight of shape (C,); got "
                             f"{[x.shape for x in self.cells]}, {self.floor.shape}, {self.weight.shape}")

    @classmethod
    def one(cls, x: np.ndarray, floor: float = 0.0) -> Outcomes:
        """One cell, weight 1: the figure is the cell's (floor-normalised) accuracy."""
        return cls(cells=(np.asarray(x, dtype=np.float64),), floor=np.array([floor]), weight=np.array([1.0]))

    @property
    def seeds(self) -> int:
        return self.cells[0].shape[0]


@dataclass(frozen=True)
class Difference(Interval):
    p: float = 1.0  # two-sided bootstrap p-value of "no difference" (the share of replicates across 0)


def outcome_matrix(grids: Sequence[dict], task: str, length: int | str) -> np.ndarray:
    """(S, N) answer outcomes of one cell, one row per seed's algorithmic results (`tasks.<task>...`)."""
    rows = [grid["tasks"][task]["lengths"][str(length)]["outcomes"] for grid in grids]
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{task}@{length}: seeds scored different numbers of problems ({[len(r) for r in rows]})")
    return np.array([[c == "1" for c in r] for r in rows], dtype=np.float64)


def resampled_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(..., B) the mean of `values` (..., k) at the drawn indices `idx` (..., B, k), its deviation from
    the mean of all k widened by sqrt(k / (k - 1)) so that the replicate variance is unbiased."""
    k = values.shape[-1]
    drawn = np.take_along_axis(values[..., None, :], idx, axis=-1).mean(axis=-1)  # (..., B)
    full = values.mean(axis=-1, keepdims=True)  # (..., 1)
    return full + (drawn - full) * (np.sqrt(k / (k - 1)) if k > 1 else 0.0)


def cell_replicates(x: np.ndarray, seed_idx: np.ndarray, problem_idx: np.ndarray) -> np.ndarray:
    """(..., B) accuracy replicates of cells x (..., S, N) from drawn seeds (..., B, S) and problems
    (..., B, N): the deviation the drawn seeds cause plus the one the drawn problems cause."""
    point = x.mean(axis=(-2, -1))[..., None]  # (..., 1)
    reps = resampled_means(x.mean(axis=-1), seed_idx) + resampled_means(x.mean(axis=-2), problem_idx) - point
    return np.clip(reps, 0.0, 1.0)


def draw(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
    """(*shape, k) indices of k units drawn with replacement."""
    return rng.integers(0, k, size=(*shape, k))


def jeffreys(k: np.ndarray | int, n: np.ndarray | int, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The Jeffreys interval of k successes in n: Beta(k + 1/2, n - k + 1/2) quantiles, with the end
    at 0 when k = 0 and at 1 when k = n (Brown, Cai and DasGupta 2001)."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    lo = np.where(k > 0, beta.ppf((1 - level) / 2, k + 0.5, n - k + 0.5), 0.0)
    hi = np.where(k < n, beta.ppf((1 + level) / 2, k + 0.5, n - k + 0.5), 1.0)
    return lo, hi


def cell_intervals(x: np.ndarray, rng: np.random.Generator, b: int = REPLICATES,
                   level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (...,), of cells x (..., S, N): the hierarchical bootstrap interval widened to
    at least the Jeffreys interval of the pooled count (so never of zero width)."""
    lead, (s, n) = x.shape[:-2], x.shape[-2:]
    reps = cell_replicates(x, draw(rng, (*lead, b), s), draw(rng, (*lead, b), n))
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], axis=-1)
    j_lo, j_hi = jeffreys(x.sum(axis=(-2, -1)), s * n, level)
    return np.minimum(lo, j_lo), np.maximum(hi, j_hi)


def cell_interval(x: np.ndarray, seed: int = SEED, b: int = REPLICATES) -> Interval:
    """One cell's answer accuracy (S, N) with its 95% interval over seeds and problems."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = cell_intervals(x, np.random.default_rng(seed), b)
    return Interval(float(x.mean()), float(lo), float(hi))


def outcome_figure(o: Outcomes) -> float:
    """The figure on the data as measured: weighted floor-normalised cell accuracies."""
    acc = np.array([x.mean() for x in o.cells])
    return float(figure(acc[None], o.floor, o.weight))


def outcome_replicates(o: Outcomes, seed_idx: np.ndarray, problem_idx: Sequence[np.ndarray]) -> np.ndarray:
    """(B,) the figure on replicates: the same drawn seeds (B, S) for every cell (a seed is one model),
    drawn problems (B, N_c) per cell."""
    acc = np.stack([cell_replicates(x, seed_idx, p) for x, p in zip(o.cells, problem_idx)], axis=-1)  # (B, C)
    return figure(acc[:, None], o.floor, o.weight)


def outcome_interval(o: Outcomes, seed: int = SEED, b: int = REPLICATES) -> Interval:
    """The arm's figure with its 95% interval (hierarchical bootstrap; no Jeffreys floor: see
    `cell_interval` for single cells)."""
    rng = np.random.default_rng(seed)
    reps = outcome_replicates(o, draw(rng, (b,), o.seeds), [draw(rng, (b,), x.shape[1]) for x in o.cells])
    return interval(outcome_figure(o), reps)


def _difference(point: float, reps: np.ndarray, level: float = LEVEL) -> Difference:
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    tail = min(np.sum(reps <= 0), np.sum(reps >= 0))
    return Difference(point, float(lo), float(hi), p=float(min(1.0, 2 * (tail + 1) / (len(reps) + 1))))


def paired_difference(a: Outcomes, b: Outcomes, seed: int = SEED, reps: int = REPLICATES) -> Difference:
    """Figure of `a` minus figure of `b` on the same problems: each replicate draws the problems of
    every cell once for both arms, and the seeds of each arm on its own."""
    if [x.shape[1] for x in a.cells] != [x.shape[1] for x in b.cells]:
        raise ValueError("a paired difference needs both arms scored on the same problems of the same cells")
    rng = np.random.default_rng(seed)
    problems = [draw(rng, (reps,), x.shape[1]) for x in a.cells]
    ra = outcome_replicates(a, draw(rng, (reps,), a.seeds), problems)
    rb = outcome_replicates(b, draw(rng, (reps,), b.seeds), problems)
    return _difference(outcome_figure(a) - outcome_figure(b), ra - rb)


def unpaired_difference(a: Outcomes, b: Outcomes, seed: int = SEED, reps: int = REPLICATES) -> Difference:
    """As `paired_difference` with each arm's problems drawn on their own: what ignoring the pairing gives."""
    rng = np.random.default_rng(seed)
    ra, rb = (outcome_replicates(o, draw(rng, (reps,), o.seeds), [draw(rng, (reps,), x.shape[1]) for x in o.cells])
              for o in (a, b))
    return _difference(outcome_figure(a) - outcome_figure(b), ra - rb)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error): the i-th smallest of m p-values times
    (m - i + 1), made non-decreasing in that order and capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = stepped
    return out


def holm_verdicts(diffs: Sequence[Difference], higher_is_better: bool = True, level: float = LEVEL) -> list[str]:
    """The verdicts of one report, Holm-adjusted together: helps / hurts only where the adjusted
    p-value is below 1 - level, in the direction of the measured difference."""
    adjusted = holm([d.p for d in diffs]) if diffs else np.array([])
    return [("helps" if (d.mean > 0) == higher_is_better else "hurts") if q < 1 - level
            else "no difference at this budget" for d, q in zip(diffs, adjusted)]


def scaled(acc: float, floor: float) -> float:
    """Scaled accuracy (acc - floor) / (1 - floor): 1 perfect, 0 chance (Grazzi et al.'s metric)."""
    return (acc - floor) / (1 - floor) if floor < 1 else 0.0


def seed_summary(x: np.ndarray, threshold: float = EXTRAPOLATES) -> dict[str, object]:
    """Per seed: accuracy on a cell (S, N), and how many seeds reach `threshold` there."""
    acc = np.asarray(x, dtype=np.float64).mean(axis=1)
    return {"acc": [float(a) for a in acc], "extrapolate": int((acc >= threshold).sum()), "seeds": len(acc)}
