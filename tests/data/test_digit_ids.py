"""Position ids supplied by the data (data.digit_ids): coupled ids shared by digits of equal
significance, abacus ids counting from the least significant digit, random offsets in training, and
decoding that computes the same ids from the tokens so far (cached equals recomputed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from looplab.data.batch import Batch
from looplab.data.digit_ids import BYTE_SEP, digit_ids, ids_of_rows
from looplab.data.packing import AlgoStream, encode_example
from looplab.data.tasks import TASKS
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.eval.decode import greedy, rows_batch
from looplab.models import create_model
from tests.helpers import GENERIC, V, tiny_model

TOK = ByteTokenizer()


def ids_by_text(text: str, kind: str) -> list[int]:
    row = torch.tensor([[ord(c) for c in text]])
    return ids_of_rows(row, kind)[0].tolist()


def test_coupled_ids_are_shared_by_digits_of_equal_significance():
    # 321 + 654 = 975, every number least significant digit first (addition_rev): "ADDR:123+456=579"
    ids = ids_by_text("ADDR:123+456=579", "coupled")
    a, b, s = ids[5:8], ids[9:12], ids[13:16]
    assert a == b == s == [1, 2, 3]  # units with units, tens with tens, hundreds with hundreds
    assert ids[:5] == [0, 1, 2, 3, 4]  # the tag, before any digit, keeps its positions
    assert ids[8] == ids[12] == 0  # '+' and '=' sit beside the units, whatever the numbers' length
    longer = ids_by_text("ADDR:12345678+12345678=", "coupled")
    assert longer[:5] == ids[:5] and longer[13] == longer[22] == 0 and longer[14:22] == list(range(1, 9))


def test_the_separator_is_significance_zero_after_digits_and_plain_without():
    assert BYTE_SEP == TOK.sep_id
    ctx, answer = encode_example(TOK, "ADDR:12+34=", "46")
    ids = ids_of_rows(torch.tensor([ctx + answer[:-1]]), "coupled")[0].tolist()
    assert ids[len(ctx) - 1] == 0 and ids[len(ctx):] == [1, 2]  # sep predicts digit 1, digit 1 predicts digit 2
    ctx, answer = encode_example(TOK, "CPY:abc=", "abc")
    assert ids_of_rows(torch.tensor([ctx + answer]), "coupled")[0].tolist() == list(range(len(ctx) + 4))


def test_abacus_ids_count_from_the_least_significant_digit_and_are_zero_elsewhere():
    ids = ids_by_text("ADDR:1234+56=7904", "abacus")
    assert ids[5:9] == [1, 2, 3, 4] and ids[10:12] == [1, 2] and ids[13:17] == [1, 2, 3, 4]
    assert [ids[i] for i in (0, 1, 2, 3, 4, 9, 12)] == [0] * 7
    assert ids_of_rows(torch.tensor([[1, 2, 3]]), "plain") is None


def test_training_shifts_each_examples_digits_by_one_random_offset():
    stream = AlgoStream(TOK, ["addition_rev"], seq_len=64, batch_size=16, seed=1, packing="isolated",
                        position_ids="coupled", position_offset=20)
    batch = stream.next_batch()
    tokens, ids, seg = batch.tokens.numpy(), batch.position_ids.numpy(), batch.segments
    plain = digit_ids(tokens, seg.positions.numpy(), "coupled")
    shift = ids - plain
    assert 0 <= shift.min() and shift.max() <= 20
    offsets = set()
    for r in range(tokens.shape[0]):
        for e in np.unique(seg.ids[r].numpy()):
            cols = np.flatnonzero(seg.ids[r].numpy() == e)
            is_num = (tokens[r, cols] >= ord("0")) & (tokens[r, cols] <= ord("9"))
            first = int(np.argmax(is_num)) if is_num.any() else len(cols)
            assert bool((shift[r, cols[:first]] == 0).all())  # before the first digit: plain positions
            if first < len(cols):  # digits and every token after the first: one offset per example
                assert len(set(shift[r, cols[first:]].tolist())) == 1
                offsets.add(int(shift[r, cols[first]]))
    assert len(offsets) > 3
    same = AlgoStream(TOK, ["addition_rev"], seq_len=64, batch_size=16, seed=1, packing="isolated").next_batch()
    assert torch.equal(same.tokens, batch.tokens)  # the offsets do not change the data


def test_answer_slots_count_as_the_answers_digits():
    ctx, answer = encode_example(TOK, "ADDR:12+34=", "46")
    row = torch.tensor([ctx + [TOK.pad_id]])  # [bos ADDR:12+34= sep slot]: sep reads digit 1, the slot digit 2
    ids = ids_of_rows(row, "coupled", slot_id=TOK.pad_id)[0].tolist()
    # the slot stands where training had the answer's first digit (significance 1), as training computed it;
    # the separator, which predicts that digit, is significance 0
    assert ids[-1] == 1 and ids[-2] == 0


@pytest.mark.parametrize("kind", ["coupled", "abacus"])
@pytest.mark.parametrize("variant", GENERIC)
@torch.no_grad()
def test_cached_decoding_equals_recomputation_with_data_ids(variant, kind):
    if variant == "absolute" and kind == "coupled":
        pytest.skip("absolute reads coupled ids from its table like any position; covered by baseline")
    model = tiny_model(variant, position_ids=kind)
    prompts = [encode_example(TOK, p, t)[0] for p, t in TASKS["addition_rev"].generate(
        np.random.default_rng(0), 4, 3).texts()]
    cached = greedy(model, prompts, max_new_tokens=6, eos_id=-1, batch_size=4)
    assert cached == greedy(model, prompts, max_new_tokens=6, eos_id=-1, batch_size=4, use_cache=False)
    x = torch.tensor([prompts[0]])
    full = model(rows_batch(model, x)).logits
    y = x.clone()
    y[:, 8:] = 7
    torch.testing.assert_close(model(rows_batch(model, y)).logits[:, :8], full[:, :8], rtol=0, atol=1e-5)


def test_a_coupled_model_reads_digit_ids_above_its_plain_positions():
    """Decoding lifts coupled digit ids by half the position range, as training does (TaskData), so they
    never collide with the plain positions of the tag and operators around them."""
    m = tiny_model("baseline", position_ids="coupled")
    ids = rows_batch(m, torch.tensor([[ord(c) for c in "ADDR:12+34="]])).position_ids[0].tolist()
    base = m.cfg.max_seq_len // 2
    assert ids[5:7] == [base + 1, base + 2] and ids[8:10] == [base + 1, base + 2] and ids[:5] == [0, 1, 2, 3, 4]


def test_the_ids_reach_the_model():
    """Coupled ids change a rotary model's output; an abacus model needs its ids, and they change its output."""
    x = torch.tensor([[ord(c) for c in "ADDR:123+456="]])
    m = tiny_model("baseline", position_ids="coupled")
    assert not torch.allclose(m(Batch(x)).logits, m(rows_batch(m, x)).logits, atol=1e-5)
    m = tiny_model("baseline", position_ids="abacus")
    with pytest.raises(LooplabError, match="needs the batch's abacus_ids"):
        m(Batch(x))
    zeros = Batch(x, abacus_ids=torch.zeros_like(x))
    assert not torch.allclose(m(zeros).logits, m(rows_batch(m, x)).logits, atol=1e-5)
    with pytest.raises(LooplabError, match="position_ids"):
        create_model("baseline", "tiny", V, position_ids="ruler")
    with pytest.raises(LooplabError, match="random"):
        create_model("baseline", "tiny", V, position_ids="coupled", pos_encoding="random")
