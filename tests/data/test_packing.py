"""Packing: whole examples per row, loss on answers, exact resume, byte fast path = generic path."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from looplab.data.packing import IGNORE, AlgoStream, byte_tokens, encode_example, generic_tokens, next_fit
from looplab.data.tasks import TASKS, get_tasks
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError

ALL = [t.name for t in get_tasks(None)]  # the default mix (passkey is opt-in)


class SlowBytes(ByteTokenizer):
    """The byte tokenizer forced through the generic encode path."""

    is_byte_level = False


class Shifted:
    """A non-byte tokenizer: specials first, then byte b as id b + 4."""

    vocab_size, bos_id, eos_id, pad_id, sep_id, is_byte_level = 260, 0, 1, 2, 3, False

    def encode(self, text: str) -> list[int]:
        return [b + 4 for b in text.encode()]

    def decode(self, ids) -> str:
        return bytes(i - 4 for i in ids if i >= 4).decode()


def full_rows(tok, tasks, *, seq_len, batch_size, seed, n_batches=1, **kw):
    """The packed rows (B, T + 1) and the answer-loss y, from two streams that differ only in loss_on.

    With loss on every token, y's last column is the row's final token unless that is padding."""
    a = AlgoStream(tok, tasks, seq_len=seq_len, batch_size=batch_size, seed=seed, loss_on="all", **kw)
    b = AlgoStream(tok, tasks, seq_len=seq_len, batch_size=batch_size, seed=seed, loss_on="answer", **kw)
    out = []
    for _ in range(n_batches):
        (xa, ya), (xb, yb) = ((s.tokens, s.targets) for s in (a.next_batch(), b.next_batch()))
        assert torch.equal(xa, xb)
        last = torch.where(ya[:, -1:] == IGNORE, tok.pad_id, ya[:, -1:])
        out.append((torch.cat([xa, last], dim=1), ya, yb))
    return out


def parse_row(tok, row):
    """Split a row into (prompt ids, target ids) examples; asserts the layout and trailing padding."""
    examples, i = [], 0
    while i < len(row) and row[i] != tok.pad_id:
        assert row[i] == tok.bos_id, row
        sep = row.index(tok.sep_id, i)
        eos = row.index(tok.eos_id, sep)  # raises if the example was cut off
        examples.append((i, sep, eos))
        i = eos + 1
    assert all(t == tok.pad_id for t in row[i:])
    return examples


@pytest.mark.parametrize("tok", [ByteTokenizer(), Shifted()], ids=["bytes", "shifted"])
def test_rows_hold_whole_correct_examples_and_loss_masks(tok):
    (row_t, y_all, y_ans), = full_rows(tok, ALL, seq_len=128, batch_size=16, seed=1)
    n_examples = 0
    for row, ya, yb in zip(row_t.tolist(), y_all.tolist(), y_ans.tolist()):
        answer_pos, targets = [False] * len(row), []
        for bos, sep, eos in parse_row(tok, row):
            prompt, target = tok.decode(row[bos + 1 : sep]), tok.decode(row[sep + 1 : eos])
            task = next(t for t in TASKS.values() if prompt.startswith(t.tag))
            assert task.solve(prompt) == target
            assert row[bos + 1 : sep] == tok.encode(prompt) and row[sep + 1 : eos] == tok.encode(target)
            answer_pos[sep + 1 : eos + 1] = [True] * (eos - sep)
            targets.append(target)
            n_examples += 1
        assert [v != IGNORE for v in yb] == answer_pos[1:]  # answer tokens and eos, nothing else
        assert [v != IGNORE for v in ya] == [t != tok.pad_id for t in row[1:]]
        assert all(v == IGNORE or v == t for v, t in zip(ya, row[1:]))
        supervised = [v for v in yb if v != IGNORE]
        assert _split_on(supervised, tok) == targets
    assert n_examples > 100


def _split_on(ids, tok):
    """Answer ids of a row, cut at each eos and decoded."""
    out, cur = [], []
    for i in ids:
        if i == tok.eos_id:
            out.append(tok.decode(cur))
            cur = []
        else:
            cur.append(i)
    assert not cur
    return out


def test_shapes_shift_and_fill():
    tok = ByteTokenizer()
    s = AlgoStream(tok, ALL, seq_len=256, batch_size=8, seed=0, loss_on="all")
    assert s.tokens_per_batch == 8 * 256
    batch = s.next_batch()
    x, y = batch.tokens, batch.targets
    assert x.shape == y.shape == (8, 256) and x.dtype == y.dtype == torch.int64
    on = y[:, :-1] != IGNORE
    assert torch.equal(y[:, :-1][on], x[:, 1:][on])
    assert torch.equal(on, x[:, 1:] != tok.pad_id)
    assert (x[:, 0] == tok.bos_id).all()
    assert (x != tok.pad_id).float().mean() > 0.85


def test_fast_path_equals_generic_path():
    for loss_on in ("answer", "all"):
        a = AlgoStream(ByteTokenizer(), ALL, seq_len=96, batch_size=4, seed=5, loss_on=loss_on, block_batches=2)
        b = AlgoStream(SlowBytes(), ALL, seq_len=96, batch_size=4, seed=5, loss_on=loss_on, block_batches=2)
        for _ in range(5):
            (xa, ya), (xb, yb) = ((s.tokens, s.targets) for s in (a.next_batch(), b.next_batch()))
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("name", ALL)
def test_byte_tokens_equal_generic_tokens(name):
    task = TASKS[name]
    for length in (task.train_lengths[0], task.train_lengths[1], max(task.ood_lengths)):
        ex = task.generate(np.random.default_rng(length), 30, length)
        fast, ref = byte_tokens(ByteTokenizer(), ex), generic_tokens(ByteTokenizer(), ex)
        for f, r in zip(fast, ref):
            assert np.array_equal(f, r)


def test_next_fit_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    for _ in range(20):
        width, n_rows = int(rng.integers(5, 40)), int(rng.integers(1, 8))
        lens = rng.integers(1, width + 1, size=int(rng.integers(1, 60)))
        expect, row, col = [], 0, 0
        for n in lens.tolist():
            if col + n > width:
                row, col = row + 1, 0
            expect.append(row * width + col if row < n_rows else -1)
            col += n
        start, full = next_fit(lens, width, n_rows)
        assert start.tolist() == expect
        assert full == (row >= n_rows)


def test_seeded_and_resumable():
    tok = ByteTokenizer()

    def make(seed):
        return AlgoStream(tok, ALL, seq_len=64, batch_size=4, seed=seed, block_batches=3)

    a, b = make(3), make(3)
    assert all(torch.equal(a.next_batch().tokens, b.next_batch().tokens) for _ in range(4))
    assert not torch.equal(make(3).next_batch().tokens, make(4).next_batch().tokens)
    for fresh in (make(3), a):  # before the first batch, and in the middle of a block
        state = json.loads(json.dumps(fresh.state_dict()))  # plain Python, JSON-safe
        expect = [fresh.next_batch() for _ in range(7)]
        c = make(99)
        c.load_state_dict(state)
        got = [c.next_batch() for _ in range(7)]
        assert all(torch.equal(p.tokens, q.tokens) and torch.equal(p.targets, q.targets) for p, q in zip(expect, got))
    with pytest.raises(LooplabError, match="cannot resume exactly"):
        AlgoStream(tok, ["copy"], seq_len=64, batch_size=4, seed=0).load_state_dict(state)


def test_resume_keeps_changed_lengths():
    tok = ByteTokenizer()
    a = AlgoStream(tok, ["copy", "parity"], seq_len=64, batch_size=4, seed=0, block_batches=2)
    a.next_batch()
    a.set_lengths("copy", (3, 3))  # from the next block on
    state = json.loads(json.dumps(a.state_dict()))
    expect = [a.next_batch() for _ in range(3)]
    b = AlgoStream(tok, ["copy", "parity"], seq_len=64, batch_size=4, seed=1, block_batches=2)
    b.load_state_dict(state)
    assert all(torch.equal(p.tokens, q.tokens) for p, q in zip(expect, [b.next_batch() for _ in range(3)]))
    assert b.lengths["copy"] == (3, 3)

    def copy_lengths(x):
        return {len(m) for row in x.tolist() for m in re.findall(r"CPY:([a-z]+)=", tok.decode(row))}

    assert copy_lengths(expect[-1].tokens) == {3} and copy_lengths(expect[0].tokens) != {3}


def test_task_and_length_mix():
    (rows, _, _), = full_rows(ByteTokenizer(), ALL, seq_len=256, batch_size=64, seed=2)
    tok, tasks, copy_lens = ByteTokenizer(), Counter(), Counter()
    for row in rows.tolist():
        for bos, sep, _ in parse_row(tok, row):
            prompt = tok.decode(row[bos + 1 : sep])
            tasks[prompt[:4]] += 1
            if prompt.startswith("CPY:"):
                copy_lens[len(prompt) - 5] += 1
    total = sum(tasks.values())
    assert len(tasks) == 10 and all(0.07 < c / total < 0.13 for c in tasks.values()), tasks
    lo, hi = TASKS["copy"].train_lengths
    assert set(copy_lens) == set(range(lo, hi + 1))


def test_length_override_and_errors():
    tok = ByteTokenizer()
    (rows, _, _), = full_rows(tok, ["copy"], seq_len=64, batch_size=2, seed=0, lengths={"copy": (5, 5)})
    for row in rows.tolist():
        assert all(eos - bos == 1 + 4 + 5 + 1 + 1 + 5 for bos, _, eos in parse_row(tok, row))
    with pytest.raises(LooplabError, match=r"task copy at length \d+ needs \d+ tokens .* seq_len 16"):
        AlgoStream(tok, ["copy"], seq_len=16, batch_size=2, seed=0).next_batch()
    with pytest.raises(LooplabError, match="unknown task 'copyy' in lengths; allowed: mod_add"):
        AlgoStream(tok, ["copy"], seq_len=64, batch_size=2, seed=0, lengths={"copyy": (1, 2)})
    with pytest.raises(LooplabError, match="1 <= min <= max"):
        AlgoStream(tok, ["copy"], seq_len=64, batch_size=2, seed=0, lengths={"copy": (4, 2)})
    with pytest.raises(LooplabError, match="unknown task 'nope'; allowed: mod_add"):
        AlgoStream(tok, ["nope"], seq_len=64, batch_size=2, seed=0)
    with pytest.raises(LooplabError, match="unknown loss_on 'prompt'; allowed: answer, all"):
        AlgoStream(tok, ["copy"], seq_len=64, batch_size=2, seed=0, loss_on="prompt")


def test_encode_example():
    tok = ByteTokenizer()
    ctx, ans = encode_example(tok, "SUC:9=", "10")
    assert ctx == [tok.bos_id, *b"SUC:9=", tok.sep_id] and ans == [ord("1"), ord("0"), tok.eos_id]


def test_blocks_that_need_several_draws():
    """A block whose first draw runs short keeps drawing; rows stay whole, correct and full."""
    tok = ByteTokenizer()
    s = AlgoStream(tok, ALL, seq_len=128, batch_size=4, seed=0, loss_on="all", block_batches=2)
    s._mean = 1000.0  # sizes every draw at 16 examples
    batch = s.next_batch()
    x, y = batch.tokens, batch.targets
    rows = torch.cat([x, torch.where(y[:, -1:] == IGNORE, tok.pad_id, y[:, -1:])], dim=1)
    for row in rows.tolist():
        for bos, sep, _ in parse_row(tok, row):
            prompt = tok.decode(row[bos + 1 : sep])
            assert next(t for t in TASKS.values() if prompt.startswith(t.tag)).solve(prompt) == tok.decode(
                row[sep + 1 : row.index(tok.eos_id, sep)])
    assert (x != tok.pad_id).float().mean() > 0.85


def test_single_packing_puts_one_example_at_the_start_of_each_row():
    """`packing="single"`: every row is [bos] prompt [sep] answer [eos] then padding, so no example
    attends to another and each starts at position 0; the stream is seeded and resumable as before."""
    tok = ByteTokenizer()
    stream = AlgoStream(tok, ["parity", "addition_rev", "copy"], seq_len=24, batch_size=8, seed=3, packing="single")
    for _ in range(3):
        batch = stream.next_batch()
        x, y = batch.tokens, batch.targets
        for row, yr in zip(x.tolist(), y.tolist()):
            assert row[0] == tok.bos_id and row.count(tok.bos_id) == 1
            (bos, sep, eos), = parse_row(tok, row + [tok.pad_id])
            prompt, target = tok.decode(row[1:sep]), tok.decode(row[sep + 1:eos])
            task = next(t for t in TASKS.values() if prompt.startswith(t.tag))
            assert task.solve(prompt) == target
            assert [v != IGNORE for v in yr] == [sep <= i < eos for i in range(len(row))]
    state = stream.state_dict()
    again = AlgoStream(tok, ["parity", "addition_rev", "copy"], seq_len=24, batch_size=8, seed=0, packing="single")
    again.load_state_dict(state)
    assert torch.equal(again.next_batch().tokens, stream.next_batch().tokens)
    packed = AlgoStream(tok, ["parity"], seq_len=24, batch_size=8, seed=3)
    with pytest.raises(LooplabError, match="cannot resume exactly"):
        packed.load_state_dict(state)
    with pytest.raises(LooplabError, match="unknown packing 'pairs'; allowed: packed, single"):
        AlgoStream(tok, ["parity"], seq_len=24, batch_size=8, seed=3, packing="pairs")
