"""act's guards against halting collapse: the ponder warm-up and the minimum-step exploration, and the
halting depth by input length that the report plots."""

from __future__ import annotations

import pytest
import torch

from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.eval.algorithmic import drawn, halting_by_length
from looplab.eval.decode import rows_batch
from tests.helpers import V, tiny_model


def test_ponder_weight_ramps_over_training_forwards_and_resumes():
    m = tiny_model("act", ponder_warmup=4, lambda_ponder=0.01).train()
    x = torch.randint(0, V, (2, 8))
    weights = [float(m(x, x).aux["ponder_weight"]) for _ in range(6)]
    assert weights == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01, 0.01])
    m.eval()
    m(x, x)
    assert int(m.ponder_calls) == 6  # evaluation does not advance the ramp
    resumed = tiny_model("act", ponder_warmup=4, lambda_ponder=0.01)
    resumed.load_state_dict(m.state_dict())
    assert resumed.ponder_weight() == pytest.approx(0.01)
    assert "ponder_calls" not in tiny_model("act").state_dict()  # without a warm-up the checkpoint is unchanged


def test_minimum_steps_keep_explored_positions_running_in_training_only():
    """halt_init 0.995 halts every position at loop 1; with exploration on every position, no
    position halts before its drawn minimum (>= 2) in training, and evaluation is unaffected."""
    m = tiny_model("act", halt_init=0.995, min_steps_explore=1.0)
    x = torch.randint(0, V, (4, 10))
    assert m.halting_histogram(x)[0] == 40
    m.train()
    torch.manual_seed(0)
    depths = m.halting_depths(x)
    assert int(depths.min()) >= 2 and len(depths.unique()) > 1
    half = tiny_model("act", halt_init=0.995, min_steps_explore=0.5).train()
    share = float((half.halting_depths(torch.randint(0, V, (8, 64))) == 1).float().mean())
    assert 0.35 < share < 0.65


def test_bad_halting_options_are_errors():
    with pytest.raises(LooplabError, match="min_steps_explore must be a float in \\[0, 1\\]"):
        tiny_model("act", min_steps_explore=1.5)


def test_halting_depth_by_length_covers_the_grid():
    m = tiny_model("act", n_loops=4)
    out = halting_by_length(m, ByteTokenizer(), ["parity"], problems=drawn(3, 0))
    assert list(out["parity"]) == ["4", "8", "16", "32", "64"]
    assert all(v == 4.0 for v in out["parity"].values())  # the deep start: every position runs to the cap
    assert halting_by_length(tiny_model("shared_loop"), ByteTokenizer(), ["parity"], problems=drawn(3, 0)) == {}


@pytest.mark.parametrize("kind", ["coupled", "abacus"])
@torch.no_grad()
def test_halting_depths_read_the_data_ids(kind):
    """A model trained with digit ids: the halting depths are read with the ids decoding computes, so
    they are the depths the forward on the same batch halts at (its aux figures), and the per-length
    table is made (it refused such models before)."""
    m = tiny_model("act", n_loops=4, halt_init=0.5, position_ids=kind)
    torch.manual_seed(1)
    torch.nn.init.normal_(m.halt.weight, std=3.0)  # positions halt at different loops
    x = torch.tensor([[ord(c) for c in "ADDR:1234+5678="], [ord(c) for c in "ADDR:9876+1234="]])
    batch = rows_batch(m, x)
    depths = m.halting_depths(batch)
    assert len(depths.unique()) > 1
    aux = m(batch).aux
    assert float(depths.float().mean()) == pytest.approx(float(aux["halt_depth_mean"]))
    assert float((depths == 1).float().mean()) == pytest.approx(float(aux["halt_at_1_share"]))
    out = halting_by_length(m, ByteTokenizer(), ["addition_rev"], problems=drawn(3, 0))
    assert all(1.0 <= v <= 4.0 for v in out["addition_rev"].values())
