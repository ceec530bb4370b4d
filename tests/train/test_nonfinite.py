"""A NaN or infinite loss: stop naming the step and the last good checkpoint without saving anything
(the best model is never overwritten), or, with on_nonfinite=skip, drop that step's update."""

from __future__ import annotations

import json

import pytest
import torch

from looplab.errors import LooplabError
from looplab.io import read_payload
from tests.train.test_resume import config, trainer


def poison(t, steps: set[int]) -> None:
    """Make the loss NaN on the optimiser steps (1-based) in `steps`."""
    forward = t.step_model.forward

    def nan_loss(*args, **kwargs):
        out = forward(*args, **kwargs)
        if t.step + 1 in steps:
            out.loss = out.loss * float("nan")
        return out

    t.step_model.forward = nan_loss


def test_nan_stops_the_run_naming_the_step_and_the_last_good_checkpoint(tmp_path):
    t = trainer(config(tmp_path / "run", log_every=100), "baseline")  # the loss is not logged at step 13
    poison(t, {13})
    with pytest.raises(LooplabError) as e:
        t.run()
    msg = str(e.value)
    assert "at step 13" in msg and "last_model.pt (step 10)" in msg, msg
    last = read_payload(tmp_path / "run" / "last_model.pt")
    assert last["train_state"]["step"] == 10 and all(torch.isfinite(v).all() for v in last["model"].values())
    best = read_payload(tmp_path / "run" / "best_model.pt")
    assert json.loads(best["meta"])["step"] == 8 and all(torch.isfinite(v).all() for v in best["model"].values())


def test_nan_before_any_checkpoint_says_so(tmp_path):
    t = trainer(config(tmp_path / "run"), "baseline")
    poison(t, {2})
    with pytest.raises(LooplabError, match="at step 2; stopped without saving. No checkpoint was written yet"):
        t.run()
    assert not (tmp_path / "run" / "last_model.pt").exists()


def test_skip_drops_the_update_and_finishes(tmp_path):
    t = trainer(config(tmp_path / "run", on_nonfinite="skip"), "baseline")
    poison(t, {7})
    summary = t.run()
    assert summary["skipped_steps"] == 1 and summary["steps"] == 24
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["step"] for r in rows if "skipped_nonfinite" in r] == [7]


def test_skipped_update_leaves_weights_and_optimiser_untouched(tmp_path):
    t = trainer(config(tmp_path / "run", on_nonfinite="skip"), "baseline")
    poison(t, {1})
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train_step()
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())
    assert not t.opt.state  # AdamW never stepped


def test_skip_stops_after_too_many_in_a_row(tmp_path):
    t = trainer(config(tmp_path / "run", on_nonfinite="skip", max_skipped_steps=3), "baseline")
    poison(t, set(range(4, 30)))
    with pytest.raises(LooplabError, match="not finite for 4 steps in a row"):
        t.run()
