"""The learning-rate sweep's rule: the choice, its tie rule, the edge extensions, the preset's sweep."""

from __future__ import annotations

import dataclasses
import json

import pytest

from looplab.errors import LooplabError
from looplab.ladder.presets import get_preset
from looplab.ladder.sweep import FAILED, TIE, Score, choose, extension, outcome, score

GRID = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3)


def seeds(acc: float, loss: float, spread: float = 0.01) -> list[Score]:
    """Two seeds whose means are (acc, loss)."""
    return [Score(acc - spread, loss + spread), Score(acc + spread, loss - spread)]


def curve(accs: dict[float, float]) -> dict[float, list[Score]]:
    """Rate -> two seeds at that accuracy; the losses fall with the accuracy, so they agree with it."""
    return {lr: seeds(acc, 2.0 - acc) for lr, acc in accs.items()}


def test_inside_winner_is_chosen_and_does_not_extend():
    points = curve({lr: acc for lr, acc in zip(GRID, (0.2, 0.5, 0.9, 0.6, 0.3), strict=True)})
    assert choose(points) == 1e-3
    assert extension(GRID, points, steps=2) is None


def test_top_edge_winner_extends_twice_then_stops():
    accs = dict(zip(GRID, (0.1, 0.2, 0.3, 0.4, 0.5), strict=True))
    points = curve(accs)
    assert extension(GRID, points, steps=2) == 8e-3  # one factor-2 step past the top edge
    points |= curve({8e-3: 0.6})
    assert extension(GRID, points, steps=2) == 16e-3  # the extension won again: one more
    points |= curve({16e-3: 0.7})
    assert choose(points) == 16e-3 and extension(GRID, points, steps=2) is None  # two steps: settled
    assert extension(GRID, curve(accs), steps=0) is None


def test_bottom_edge_winner_extends_down_and_a_bracketed_extension_settles():
    points = curve(dict(zip(GRID, (0.9, 0.5, 0.4, 0.3, 0.2), strict=True)))
    assert extension(GRID, points, steps=2) == 1.25e-4
    points |= curve({1.25e-4: 0.6})  # worse than the old edge: the optimum is bracketed
    assert choose(points) == 2.5e-4 and extension(GRID, points, steps=2) is None


def test_accuracies_within_the_tie_band_are_decided_by_validation_loss():
    points = {1e-3: seeds(0.800, 1.5), 2e-3: seeds(0.800 - TIE, 1.2), 4e-3: seeds(0.790, 0.9)}
    assert choose(points) == 2e-3  # tied with the best (within half a point), lower loss; 4e-3 is a point behind
    points[1e-3] = seeds(0.800, 1.2)
    assert choose(points) == 1e-3  # same loss too: the smaller rate
    points[2e-3] = seeds(0.800 - 2 * TIE, 1.0)
    assert choose(points) == 1e-3  # outside the band, however low its loss


def test_a_rate_with_a_failed_seed_is_not_chosen():
    points = {5e-4: seeds(0.3, 1.2), 1e-3: seeds(0.5, 1.0), 2e-3: [Score(0.9, 0.5), FAILED]}
    assert choose(points) == 1e-3
    assert extension((5e-4, 1e-3, 2e-3), points, steps=2) is None  # the failure above bounds it: no extension
    with pytest.raises(LooplabError, match="every learning-rate sweep run of baseline failed"):
        choose({1e-3: [FAILED, FAILED]}, "baseline")
    assert extension((1e-3, 2e-3), {1e-3: [FAILED], 2e-3: [FAILED]}, steps=2) is None


def test_score_reads_accuracy_and_loss_from_the_summary(tmp_path):
    assert score(tmp_path) == FAILED  # no summary.json
    (tmp_path / "summary.json").write_text(json.dumps({"final_eval": {"iid_acc": 0.75}, "final_alg_val_loss": 1.5}))
    assert score(tmp_path) == Score(0.75, 1.5)
    (tmp_path / "summary.json").write_text('{"final_eval": {"iid_acc": 0.0}, "final_alg_val_loss": NaN}')
    assert score(tmp_path) == FAILED  # diverged


def test_outcome_marks_extensions_and_the_means():
    points = curve({1e-3: 0.4, 2e-3: 0.6, 4e-3: 0.5})
    doc = outcome((1e-3, 2e-3), points, 2e-3)
    assert doc["extended"] == [4e-3] and doc["chosen"] == 2e-3
    assert doc["points"]["0.004"]["extended"] and not doc["points"]["0.002"]["extended"]
    assert doc["points"]["0.002"]["iid_acc"] == pytest.approx(0.6) and len(doc["points"]["0.002"]["seeds"]) == 2


def test_cpu_preset_sweeps_five_rates_on_two_seeds_for_a_quarter_of_the_budget():
    p = get_preset("cpu")
    assert len(p.lr_grid) >= 5 and all(b == pytest.approx(2 * a) for a, b in zip(p.lr_grid, p.lr_grid[1:]))
    assert p.sweep_seeds == 2 and p.sweep_steps == 2 and p.sweep_tokens >= p.base.total_tokens / 4


@pytest.mark.parametrize(("change", "needle"), [
    ({"lr_grid": (2e-3, 1e-3)}, "ascending"),
    ({"lr_grid": (1e-3,)}, ">= 2 values"),
    ({"sweep_seeds": 0}, "sweep_seeds"),
    ({"sweep_steps": -1}, "sweep_steps"),
])
def test_bad_sweep_settings_are_refused(change, needle):
    with pytest.raises(LooplabError, match=needle):
        dataclasses.replace(get_preset("cpu"), **change)
