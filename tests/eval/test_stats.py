"""The bootstrap behind every interval: coverage, the binomial inner level, and verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from looplab.eval import stats
from looplab.eval.stats import Cells, Interval


def one_cell(acc: list[float], n: int, floor: float = 0.0) -> Cells:
    a = np.array(acc, dtype=float)[:, None]
    return Cells(acc=a, n=np.full(a.shape, n), floor=np.array([floor]), weight=np.array([1.0]))


def test_single_seed_interval_matches_the_binomial_standard_error():
    """One seed, one cell: resampling examples only, so the interval is p +- 1.96 sqrt(p (1 - p) / n)."""
    iv = stats.accuracy_interval(one_cell([0.7], 400))
    half = 1.96 * np.sqrt(0.7 * 0.3 / 400)
    assert iv.mean == pytest.approx(0.7)
    assert iv.lo == pytest.approx(0.7 - half, abs=0.01) and iv.hi == pytest.approx(0.7 + half, abs=0.01)


def test_floor_normalisation():
    """Parity at its floor is 0, perfect is 1, below the floor is negative."""
    assert stats.accuracy_interval(one_cell([0.5, 0.5, 0.5], 100, floor=0.5)).mean == pytest.approx(0.0)
    assert stats.accuracy_interval(one_cell([1.0, 1.0, 1.0], 100, floor=0.5)).mean == pytest.approx(1.0)
    assert stats.accuracy_interval(one_cell([0.25], 100, floor=0.5)).mean == pytest.approx(-0.5)


def test_seed_spread_widens_the_interval():
    """The outer level resamples seeds: seeds that disagree give a wider interval than seeds that agree."""
    agree = stats.accuracy_interval(one_cell([0.6, 0.6, 0.6], 100))
    disagree = stats.accuracy_interval(one_cell([0.3, 0.6, 0.9], 100))
    assert disagree.hi - disagree.lo > 2 * (agree.hi - agree.lo)
    assert disagree.contains(0.6) and agree.contains(0.6)


def test_coverage_on_simulated_groups():
    """Groups of 5 seeds whose true accuracy varies around 0.6: the 95% interval of the mean holds the
    truth in most of 200 simulated groups (a percentile bootstrap over 5 seeds undercovers a little)."""
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        p = np.clip(rng.normal(0.6, 0.05, size=5), 0, 1)
        acc = rng.binomial(100, p) / 100
        iv = stats.accuracy_interval(one_cell(list(acc), 100), seed=i)
        hits += iv.contains(0.6)
    assert 0.8 <= hits / 200 <= 0.99


def test_weights_make_every_task_count_the_same():
    """Two cells of one task and one of another: the figure is the mean of the two task means."""
    cells = Cells(acc=np.array([[1.0, 0.0, 0.5]]), n=np.full((1, 3), 1000), floor=np.zeros(3),
                  weight=np.array([0.25, 0.25, 0.5]))
    assert stats.accuracy_interval(cells).mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        Cells(acc=np.zeros((2, 3)), n=np.zeros((2, 2)), floor=np.zeros(3), weight=np.zeros(3))


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([0.9, 0.92, 0.91], [0.6, 0.62, 0.61], "helps"),
    ([0.6, 0.62, 0.61], [0.9, 0.92, 0.91], "hurts"),
    ([0.6, 0.7, 0.8], [0.65, 0.7, 0.75], "no difference at this budget"),
])
def test_verdict_follows_the_interval_of_the_difference(a, b, expected):
    diff = stats.difference(one_cell(a, 200), one_cell(b, 200))
    assert stats.verdict(diff) == expected
    assert diff.mean == pytest.approx(np.mean(a) - np.mean(b))


def test_fewer_is_better_for_tokens():
    diff = stats.seed_difference([1e6, 1.1e6, 0.9e6], [3e6, 3.2e6, 2.9e6])
    assert diff.hi < 0 and stats.verdict(diff, higher_is_better=False) == "helps"
    assert stats.verdict(Interval(0.0, -1.0, 1.0)) == "no difference at this budget"


def test_same_inputs_same_interval():
    c = one_cell([0.5, 0.7, 0.6], 50)
    assert stats.accuracy_interval(c) == stats.accuracy_interval(c)
