"""`--packing isolated`: examples packed back to back but kept apart (data.batch.Segments). A packed
row gives the loss its examples give one by one; without isolation it does not. Every generic
variant takes the same `Batch`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from looplab.config import TrainConfig, model_config
from looplab.data.batch import IGNORE, Batch
from looplab.data.packing import AlgoStream
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.models import MODELS
from looplab.train.trainer import Trainer
from tests.helpers import GENERIC, ISOLATING, fitted_model, tiny_model


def summed_loss(model, batch: Batch) -> tuple[float, int]:
    logits = model(Batch(batch.tokens, None, batch.lengths, batch.segments)).logits
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE,
                                             reduction="sum")
    return float(loss), int(batch.loss_mask.sum())


def packed_batch() -> Batch:
    stream = AlgoStream(ByteTokenizer(), ["copy", "parity", "addition"], seq_len=96, batch_size=2, seed=3,
                        loss_on="all", packing="isolated")
    return stream.next_batch()


def test_the_isolating_variants_come_from_the_registry():
    assert {"baseline", "shared_loop", "prc", "latent", "act", "absolute", "ssm", "ssm_mem"} <= set(ISOLATING)
    assert all(tiny_model(v).isolates_examples == (v in ISOLATING) for v in GENERIC)


@pytest.fixture
def ssm_refuses(monkeypatch):
    """Every generic variant isolates; `ssm` declared unable stands in for one that cannot."""
    monkeypatch.setitem(MODELS, "ssm", dataclasses.replace(MODELS["ssm"], isolates=False))


@pytest.mark.parametrize("variant", GENERIC)
@torch.no_grad()
def test_every_generic_variant_takes_the_same_batch(variant):
    """One Batch with every per-row fact (targets, task lengths; segments where the variant can keep
    examples apart) goes to every variant's forward, which returns logits and the loss of its targets."""
    batch = AlgoStream(ByteTokenizer(), ["copy", "parity"], seq_len=48, batch_size=3, seed=0,
                       packing="isolated" if variant in ISOLATING else "single").next_batch()
    assert batch.lengths is not None and batch.targets is not None
    model = tiny_model(variant)
    out = model(batch)
    assert out.logits.shape == (3, 48, 260) and torch.isfinite(out.loss)
    if batch.segments is None:  # row lengths change nothing for a model without a length policy
        torch.testing.assert_close(out.loss, model(batch.tokens, batch.targets).loss)
    half = model(batch.rows(slice(0, 2)))  # row selection keeps every part together
    assert half.logits.shape[0] == 2


@pytest.mark.parametrize("variant", ISOLATING)
@torch.no_grad()
def test_packed_row_loss_equals_its_examples_one_by_one(variant):
    batch = packed_batch()
    seg, y = batch.segments, batch.targets
    assert int(seg.ids[0].unique().numel()) >= 3, "rows should hold several examples"
    model = fitted_model(variant)
    packed, n_packed = summed_loss(model, batch)
    alone, n_alone = 0.0, 0
    for r in range(batch.tokens.shape[0]):
        for e in seg.ids[r].unique().tolist():
            if e < 0:  # padding: no targets
                assert bool((y[r, seg.ids[r] == e] == IGNORE).all())
                continue
            cols = (seg.ids[r] == e).nonzero().flatten()
            assert torch.equal(seg.positions[r, cols], torch.arange(len(cols)))
            loss, n = summed_loss(model, Batch(batch.tokens[r : r + 1, cols], y[r : r + 1, cols]))
            alone, n_alone = alone + loss, n_alone + n
    assert n_packed == n_alone > 0
    assert packed == pytest.approx(alone, rel=1e-4)
    leaky, _ = summed_loss(model, Batch(batch.tokens, y))  # the same rows without isolation: earlier examples are read
    assert leaky != pytest.approx(alone, rel=1e-4)


def test_a_variant_that_cannot_isolate_refuses_segments(ssm_refuses):
    with pytest.raises(LooplabError, match="cannot keep packed examples apart"):
        tiny_model("ssm")(packed_batch())


def test_no_target_crosses_examples_and_the_state_resumes():
    tok = ByteTokenizer()
    s = AlgoStream(tok, ["copy"], seq_len=64, batch_size=4, seed=0, loss_on="all", packing="isolated")
    batch = s.next_batch()
    seg = batch.segments
    boundary = seg.ids[:, 1:] != seg.ids[:, :-1]
    assert bool(boundary.any()) and bool((batch.targets[:, :-1][boundary] == IGNORE).all())
    state = s.state_dict()
    again = AlgoStream(tok, ["copy"], seq_len=64, batch_size=4, seed=9, loss_on="all", packing="isolated")
    again.load_state_dict(state)
    b2, b3 = s.next_batch(), again.next_batch()
    assert torch.equal(b2.tokens, b3.tokens) and torch.equal(b2.segments.ids, b3.segments.ids)
    assert torch.equal(b2.lengths, b3.lengths)


@pytest.mark.parametrize("variant,opts,match", [("ssm", {}, "cannot")])
def test_isolation_refuses_what_cannot_isolate(tmp_path, ssm_refuses, variant, opts, match):
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), alg_tokens=4096, total_tokens=4096, seq_len=64, batch_size=8,
                      packing="isolated", alg_tasks=("copy",), progress=False)
    with pytest.raises(LooplabError, match=match):
        Trainer(model_config("tiny", 260, variant, **opts), cfg, ByteTokenizer())


def test_training_feeds_each_micro_batch_its_rows(tmp_path, monkeypatch):
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), alg_tokens=3 * 4 * 64, total_tokens=3 * 4 * 64, seq_len=64,
                      batch_size=4, grad_accum=2, packing="isolated", alg_tasks=("copy",), progress=False,
                      eval_every_tokens=3 * 4 * 64, eval_samples=2, eval_max_new_tokens=3, threads=1)
    t = Trainer(model_config("tiny", 260, "baseline"), cfg, ByteTokenizer())
    seen = []
    real = type(t.model).forward

    def spy(self, batch, *args, **kw):
        if isinstance(batch, Batch) and batch.targets is not None:
            seen.append((tuple(batch.tokens.shape), tuple(batch.segments.ids.shape), tuple(batch.lengths.shape)))
        return real(self, batch, *args, **kw)

    monkeypatch.setattr(type(t.model), "forward", spy)
    t.run()
    # 3 steps x 2 micro-batches of 2 rows, then the 8 validation batches of 4 rows at each of 2 evaluations
    assert seen.count(((2, 64), (2, 64), (2,))) == 6
    assert seen.count(((4, 64), (4, 64), (4,))) >= 8


@pytest.mark.parametrize("variant,opts,want", [("baseline", {}, "isolated"), ("ssm", {}, "isolated"),
                                                ("shared_loop", {"pos_encoding": "random"}, "isolated")])
def test_auto_packing_isolates_where_the_variant_can(tmp_path, variant, opts, want):
    cfg = TrainConfig(output_dir=str(tmp_path / "r"), alg_tokens=4096, total_tokens=4096, seq_len=64, batch_size=8,
                      alg_tasks=("copy",), progress=False)
    assert cfg.packing == "auto"
    t = Trainer(model_config("tiny", 260, variant, **opts), cfg, ByteTokenizer())
    assert t.cfg.packing == want and t.data.stream.packing == want
