"""`--packing isolated`: examples packed back to back but kept apart (positions.Segments). A packed
row gives the loss its examples give one by one; without isolation it does not."""

from __future__ import annotations

import pytest
import torch

from looplab.config import TrainConfig, model_config
from looplab.data.packing import AlgoStream
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.models.base import IGNORE_INDEX
from looplab.train.trainer import Trainer
from tests.helpers import fitted_model

ISOLATING = ["baseline", "shared_loop", "prc", "latent", "act", "absolute"]


def summed_losses(model, x, y, **kw) -> tuple[float, int]:
    logits = model(x, **kw).logits
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX,
                                             reduction="sum")
    return float(loss), int((y != IGNORE_INDEX).sum())


@pytest.mark.parametrize("variant", ISOLATING)
@torch.no_grad()
def test_packed_row_loss_equals_its_examples_one_by_one(variant):
    tok = ByteTokenizer()
    stream = AlgoStream(tok, ["copy", "parity", "addition"], seq_len=96, batch_size=2, seed=3, loss_on="all",
                        packing="isolated")
    x, y = stream.next_batch()
    seg = stream.last_segments
    assert int(seg.ids[0].unique().numel()) >= 3, "rows should hold several examples"
    model = fitted_model(variant)
    packed, n_packed = summed_losses(model, x, y, segments=seg)
    alone, n_alone = 0.0, 0
    for r in range(x.shape[0]):
        for e in seg.ids[r].unique().tolist():
            if e < 0:  # padding: no targets
                assert bool((y[r, seg.ids[r] == e] == IGNORE_INDEX).all())
                continue
            cols = (seg.ids[r] == e).nonzero().flatten()
            assert torch.equal(seg.positions[r, cols], torch.arange(len(cols)))
            loss, n = summed_losses(model, x[r : r + 1, cols], y[r : r + 1, cols])
            alone, n_alone = alone + loss, n_alone + n
    assert n_packed == n_alone > 0
    assert packed == pytest.approx(alone, rel=1e-4)
    leaky, _ = summed_losses(model, x, y)  # the same row without isolation: earlier examples are read
    assert leaky != pytest.approx(alone, rel=1e-4)


def test_no_target_crosses_examples_and_the_state_resumes():
    tok = ByteTokenizer()
    s = AlgoStream(tok, ["copy"], seq_len=64, batch_size=4, seed=0, loss_on="all", packing="isolated")
    x, y = s.next_batch()
    seg = s.last_segments
    boundary = seg.ids[:, 1:] != seg.ids[:, :-1]
    assert bool(boundary.any()) and bool((y[:, :-1][boundary] == IGNORE_INDEX).all())
    state = s.state_dict()
    again = AlgoStream(tok, ["copy"], seq_len=64, batch_size=4, seed=9, loss_on="all", packing="isolated")
    again.load_state_dict(state)
    x2, _ = s.next_batch()
    x3, _ = again.next_batch()
    assert torch.equal(x2, x3) and torch.equal(s.last_segments.ids, again.last_segments.ids)


@pytest.mark.parametrize("variant,opts,match", [("ssm", {}, "cannot"), ("baseline", {"pos_encoding": "random"},
                                                                          "random positions")])
def test_isolation_refuses_what_cannot_isolate(tmp_path, variant, opts, match):
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), alg_tokens=4096, total_tokens=4096, seq_len=64, batch_size=8,
                      packing="isolated", alg_tasks=("copy",), progress=False)
    with pytest.raises(LooplabError, match=match):
        Trainer(model_config("tiny", 260, variant, **opts), cfg, ByteTokenizer())


def test_training_feeds_segments_to_the_model(tmp_path, monkeypatch):
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), alg_tokens=3 * 4 * 64, total_tokens=3 * 4 * 64, seq_len=64,
                      batch_size=4, grad_accum=2, packing="isolated", alg_tasks=("copy",), progress=False,
                      eval_every_tokens=3 * 4 * 64, eval_samples=2, eval_max_new_tokens=3, threads=1)
    t = Trainer(model_config("tiny", 260, "baseline"), cfg, ByteTokenizer())
    seen = []
    real = type(t.model).forward

    def spy(self, idx, targets=None, state=None, segments=None):
        seen.append(None if segments is None else tuple(segments.ids.shape))
        return real(self, idx, targets, state, segments)

    monkeypatch.setattr(type(t.model), "forward", spy)
    t.run()
    assert seen.count((2, 64)) >= 6  # 3 steps x 2 micro-batches of 2 rows, plus the validation batches


@pytest.mark.parametrize("variant,opts,want", [("baseline", {}, "isolated"), ("ssm", {}, "single"),
                                                ("shared_loop", {"pos_encoding": "random"}, "single")])
def test_auto_packing_isolates_where_the_variant_can(tmp_path, variant, opts, want):
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), alg_tokens=4096, total_tokens=4096, seq_len=64, batch_size=8,
                      alg_tasks=("copy",), progress=False)
    assert cfg.packing == "auto"
    t = Trainer(model_config("tiny", 260, variant, **opts), cfg, ByteTokenizer())
    assert t.cfg.packing == want and t.data.stream.packing == want
