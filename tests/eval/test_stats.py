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


# --- per-example outcomes: hierarchical, paired intervals -------------------------------------

GAUSS_HERMITE = np.polynomial.hermite_e.hermegauss(80)


def expit(z):
    return 1 / (1 + np.exp(-z))


def logit(p):
    return np.log(p / (1 - p))


def mean_expit(mu: float, sd: float) -> float:
    """E[expit(mu + sd Z)], Z standard normal, by Gauss-Hermite quadrature: the exact truth of a simulation."""
    z, w = GAUSS_HERMITE
    return float((expit(mu + sd * z) * w).sum() / w.sum())


def simulate(rng, m: int, seeds: int, problems: int, bimodal: bool) -> np.ndarray:
    """(m, S, N) outcomes: seed s answers problem n right with probability expit(a_s + e_n), problem
    effects e_n ~ N(0, 1) shared by the seeds; a_s ~ N(logit 0.7, 0.3) (unimodal) or logit 0.95 with
    probability 2/3 and logit 0.5 with 1/3 (bimodal: a seed either extrapolates or does not)."""
    if bimodal:
        a = np.where(rng.random((m, seeds)) < 1 / 3, 0.0, logit(0.95))
    else:
        a = rng.normal(logit(0.7), 0.3, (m, seeds))
    e = rng.normal(0.0, 1.0, (m, problems))
    return (rng.random((m, seeds, problems)) < expit(a[:, :, None] + e[:, None, :])).astype(np.float64)


@pytest.mark.parametrize(("bimodal", "seeds", "truth"), [
    (False, 3, mean_expit(logit(0.7), np.hypot(0.3, 1.0))),
    (True, 20, 2 / 3 * mean_expit(logit(0.95), 1.0) + 1 / 3 * mean_expit(0.0, 1.0)),
])
def test_cell_interval_covers_the_truth(bimodal, seeds, truth):
    """1,000 simulated cells of 100 problems: the 95% interval holds the population accuracy (over
    seeds and problems) in 92-98% of them. Bimodal seeds need many seeds: at 3 seeds a third of the
    cells saw only one mode, and no interval from them reaches the truth (coverage about 0.67)."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(4):  # 250 cells at a time keeps memory small
        x = simulate(rng, 250, seeds, 100, bimodal)
        lo, hi = stats.cell_intervals(x, rng, b=200)
        hits += int(((lo <= truth) & (truth <= hi)).sum())
    assert 0.92 <= hits / 1000 <= 0.98, hits / 1000


def test_no_cell_interval_has_zero_width():
    """All right or all wrong: the bootstrap has nothing to resample, the Jeffreys interval of the
    pooled count (300 outcomes) is the floor of the width."""
    from scipy.stats import beta
    perfect = stats.cell_interval(np.ones((3, 100)))
    assert perfect.mean == 1.0 and perfect.hi == 1.0
    assert perfect.lo == pytest.approx(beta.ppf(0.025, 300.5, 0.5)) and perfect.lo < 0.995
    zero = stats.cell_interval(np.zeros((3, 100)))
    assert zero.lo == 0.0 and zero.hi == pytest.approx(beta.ppf(0.975, 0.5, 300.5)) and zero.hi > 0.005


def test_paired_difference_is_narrower_on_correlated_arms():
    """Two arms on the same 100 problems whose difficulty varies a lot: what the problems share
    cancels in the paired difference, so its interval is narrower than the unpaired one."""
    rng = np.random.default_rng(1)
    e = rng.normal(0.0, 2.0, 100)  # (N,) problem effects, shared by both arms
    a = (rng.random((3, 100)) < expit(0.8 + e)).astype(float)
    b = (rng.random((3, 100)) < expit(0.0 + e)).astype(float)
    paired = stats.paired_difference(stats.Outcomes.one(a), stats.Outcomes.one(b))
    unpaired = stats.unpaired_difference(stats.Outcomes.one(a), stats.Outcomes.one(b))
    assert paired.mean == unpaired.mean == pytest.approx(a.mean() - b.mean())
    assert paired.hi - paired.lo < 0.8 * (unpaired.hi - unpaired.lo)
    assert paired.lo > 0 and paired.p < 0.05


def test_holm_against_a_hand_worked_example():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06,
    0.04 x 1 = 0.04 -> 0.06 (non-decreasing). Back in the given order: 0.03, 0.06, 0.06, 0.02."""
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]).shape == (0,)


def test_holm_verdicts_need_the_adjusted_p_value():
    """Each p below 0.05 on its own; Holm: 0.001 x 3, 0.03 x 2 = 0.06, 0.04 x 1 -> 0.06."""
    diffs = [stats.Difference(0.1, 0.01, 0.2, p=0.03), stats.Difference(-0.1, -0.2, -0.01, p=0.001),
             stats.Difference(0.1, 0.01, 0.2, p=0.04)]
    assert stats.holm_verdicts(diffs) == ["no difference at this budget", "hurts", "no difference at this budget"]
    assert stats.holm_verdicts(diffs[:2]) == ["helps", "hurts"]
    assert stats.holm_verdicts(diffs[1:2], higher_is_better=False) == ["helps"]


def test_figure_over_cells_shares_the_seeds():
    """Two cells at the floor and at perfect: the floor-normalised figure is their weighted mean."""
    o = stats.Outcomes(cells=(np.tile([1.0, 0.0], (3, 50)), np.ones((3, 40))), floor=np.array([0.5, 0.0]),
                       weight=np.array([0.5, 0.5]))
    iv = stats.outcome_interval(o)
    assert iv.mean == pytest.approx(0.5) and iv.contains(0.5)
    with pytest.raises(ValueError, match="one S"):
        stats.Outcomes(cells=(np.ones((3, 4)), np.ones((2, 4))), floor=np.zeros(2), weight=np.full(2, 0.5))


def test_outcomes_from_grids_and_the_seed_summary():
    grids = [{"tasks": {"parity": {"lengths": {"32": {"outcomes": o}}}}} for o in ("1111", "1110", "0100")]
    x = stats.outcome_matrix(grids, "parity", 32)
    assert x.shape == (3, 4) and x.sum() == 8
    assert stats.seed_summary(x) == {"acc": [1.0, 0.75, 0.25], "extrapolate": 1, "seeds": 3}
    assert stats.seed_summary(x, threshold=0.7)["extrapolate"] == 2
    with pytest.raises(ValueError, match="different numbers"):
        stats.outcome_matrix(grids + [{"tasks": {"parity": {"lengths": {"32": {"outcomes": "1"}}}}}], "parity", 32)
