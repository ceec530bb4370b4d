"""Answers at once (ModelConfig.answer_at_once, Fan et al.) and the scheduled length curriculum: the
rows blank the answer and keep its targets, the loss sits on the final loop's answer slots only,
the answer is read from those slots, and the maximum length rises on its schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from looplab.data.batch import IGNORE, Batch
from looplab.data.curriculum import build_curriculum
from looplab.data.packing import AlgoStream, encode_example
from looplab.data.tasks import TASKS
from looplab.data.tokenizer import ByteTokenizer
from looplab.eval import algorithmic
from looplab.eval.decode import at_once
from tests.helpers import GENERIC, tiny_model

TOK = ByteTokenizer()


@pytest.mark.parametrize("packing", ["single", "isolated"])
def test_at_once_rows_blank_the_answer_and_keep_its_targets(packing):
    kw = dict(seq_len=48, batch_size=8, seed=5, packing=packing)
    plain = AlgoStream(TOK, ["parity", "copy", "addition_bin"], **kw).next_batch()
    slots = AlgoStream(TOK, ["parity", "copy", "addition_bin"], at_once=True, **kw).next_batch()
    assert torch.equal(plain.targets, slots.targets)
    changed = plain.tokens != slots.tokens
    assert bool(changed.any()) and bool((slots.tokens[changed] == TOK.pad_id).all())
    # every blanked input held an answer token: the target one position earlier is that token
    assert torch.equal(plain.targets[:, :-1][changed[:, 1:]], plain.tokens[:, 1:][changed[:, 1:]])
    # every supervised position reads the separator or a blank slot, never an answer token
    supervised = slots.targets != IGNORE
    assert bool(((slots.tokens[supervised] == TOK.sep_id) | (slots.tokens[supervised] == TOK.pad_id)).all())


def test_loss_is_on_the_final_loops_answer_slots_and_the_answer_is_read_from_them():
    """A hand-built two-loop case: 'PAR:1=' -> '1'. The row is [bos PAR:1= sep 1 eos]; the input blanks
    the answer, [bos PAR:1= sep pad], and only sep (-> '1') and the slot (-> eos) carry a loss. The
    loss is the cross-entropy of the second (last) loop's logits there, not the first's, and the
    answer read at once is the argmax of the last loop at those two positions."""
    torch.manual_seed(0)
    model = tiny_model("shared_loop", preset="custom", n_unique=1, n_loops=2, answer_at_once=True)
    ctx, answer = encode_example(TOK, "PAR:1=", "1")
    assert answer == [ord("1"), TOK.eos_id]
    x = torch.tensor([ctx + [TOK.pad_id]])  # (1, 8): bos P A R : 1 = sep, then one slot
    y = torch.tensor([[IGNORE] * (len(ctx) - 1) + answer])
    out = model(Batch(x, y))
    first, last = model.logits_per_loop(x, 2)
    slots = slice(len(ctx) - 1, len(ctx) + 1)
    by_hand = F.cross_entropy(last[0, slots], torch.tensor(answer))
    torch.testing.assert_close(out.loss, by_hand)
    assert not torch.allclose(out.loss, F.cross_entropy(first[0, slots], torch.tensor(answer)))
    read = at_once(model, [ctx], [len(answer)], slot_id=TOK.pad_id, eos_id=TOK.eos_id)[0]
    want = last[0, slots].argmax(-1).tolist()
    assert read == (want[: want.index(TOK.eos_id) + 1] if TOK.eos_id in want else want)


def test_scoring_an_at_once_model_reads_slots_and_never_decodes(monkeypatch):
    model = tiny_model("shared_loop", answer_at_once=True)
    monkeypatch.setattr(algorithmic, "greedy", lambda *a, **k: pytest.fail("an at-once model was decoded"))
    pairs = TASKS["copy"].generate(np.random.default_rng(0), 6, 4).texts()
    readings = algorithmic.read_examples(model, TOK, pairs, max_new_tokens=8)
    assert len(readings) == 6


@pytest.mark.parametrize("variant", GENERIC)
@torch.no_grad()
def test_at_once_reading_in_batches_equals_one_prompt_at_a_time(variant):
    """Every generic variant: prompts of several lengths read together equal each read alone (buckets
    by total length, no padding)."""
    model = tiny_model(variant, answer_at_once=True)
    pairs = [p for n in (2, 5) for p in TASKS["copy"].generate(np.random.default_rng(n), 3, n).texts()]
    ctxs, answers = zip(*(encode_example(TOK, p, t) for p, t in pairs))
    lengths = [len(a) for a in answers]
    together = at_once(model, ctxs, lengths, slot_id=TOK.pad_id, eos_id=TOK.eos_id)
    alone = [at_once(model, [c], [n], slot_id=TOK.pad_id, eos_id=TOK.eos_id)[0] for c, n in zip(ctxs, lengths)]
    assert together == alone


def test_the_schedule_raises_the_maximum_length_every_steps_per_level():
    cur = build_curriculum("schedule", [TASKS["parity"]], steps_per_level=500)
    assert cur.length_mix("parity") == ((1, 1), [1.0])
    cur.update(499, {"parity": 0.0})
    assert cur.difficulty("parity") == 1
    events = cur.update(500, {"parity": 0.0})  # accuracy plays no part
    assert cur.difficulty("parity") == 2 and events[0]["event"] == "up"
    assert cur.length_mix("parity") == ((1, 2), [1.0, 1.0])  # uniform up to the current maximum
    cur.update(1_000_000, {"parity": 1.0})
    assert cur.difficulty("parity") == 8  # capped at the task's training maximum
    with pytest.raises(Exception, match="curriculum_schedule_steps"):
        build_curriculum("schedule", [TASKS["parity"]], steps_per_level=0)
