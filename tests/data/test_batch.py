"""The Batch: its parts stay together through row selection and device moves, and its checks."""

from __future__ import annotations

import pytest
import torch

from looplab.data.batch import IGNORE, Batch, Segments, as_batch


def make() -> Batch:
    tokens = torch.arange(12).view(3, 4)
    targets = torch.tensor([[1, 2, IGNORE, 4], [IGNORE] * 4, [9, 10, 11, IGNORE]])
    seg = Segments(torch.tensor([[0, 0, 1, 1]] * 3), torch.tensor([[0, 1, 0, 1]] * 3))
    return Batch(tokens, targets, torch.tensor([5, 6, 7]), seg)


def test_rows_keep_every_part_together():
    b = make().rows(slice(1, 3))
    assert b.tokens.tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert b.targets[1].tolist() == [9, 10, 11, IGNORE] and b.lengths.tolist() == [6, 7]
    assert b.segments.ids.shape == (2, 4) and b.positions.tolist() == [[0, 1, 0, 1]] * 2
    assert b.loss_mask.sum().item() == 3


def test_to_moves_every_part_and_the_mask_follows_segments():
    b = make().to("cpu")
    mask = b.mask
    assert mask.shape == (3, 1, 4, 4)
    assert mask[0, 0].tolist() == [[True, False, False, False], [True, True, False, False],
                                   [False, False, True, False], [False, False, True, True]]
    plain = Batch(b.tokens)
    assert plain.mask is None and plain.positions is None and plain.loss_mask is None


def test_rows_must_agree_and_targets_travel_once():
    with pytest.raises(ValueError, match="lengths have 2 rows, tokens 3"):
        Batch(torch.zeros(3, 4, dtype=torch.long), lengths=torch.tensor([1, 2]))
    b = make()
    assert as_batch(b) is b and as_batch(b.tokens, b.targets).targets is b.targets
    with pytest.raises(ValueError, match="inside the Batch"):
        as_batch(b, b.targets)
