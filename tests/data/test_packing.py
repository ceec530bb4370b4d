"""Packing: whole examples per row, loss on answers, exact resume, byte fast path = generic path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from looplab.data.packing import IGNORE, AlgoStream, encode_example
from looplab.data.tasks import TASKS
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError


class SlowBytes(ByteTokenizer):
    """The byte tokenizer forced through the generic encode path."""

    is_byte_level = False


def split_examples(tok, row):
    """Split a row into examples at BOS tokens, dropping padding."""
    out, cur = [], []
    for t in row:
        if t == tok.bos_id and cur:
            out.append(cur)
            cur = []
        if t != tok.pad_id:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def test_shapes_and_shift():
    tok = ByteTokenizer()
    s = AlgoStream(tok, ["copy", "addition"], seq_len=64, batch_size=8, seed=0, loss_on="all")
    x, y = s.next_batch()
    assert x.shape == y.shape == (8, 64) and x.dtype == y.dtype == torch.int64
    supervised = y != IGNORE
    assert torch.equal(y[:, :-1][supervised[:, :-1]], x[:, 1:][supervised[:, :-1]])


def test_whole_examples_and_answer_mask():
    tok = ByteTokenizer()
    s = AlgoStream(tok, list(TASKS), seq_len=128, batch_size=16, seed=1)
    x, y = s.next_batch()
    n_examples = 0
    for xr, yr in zip(x.tolist(), y.tolist()):
        for ex in split_examples(tok, xr)[:-1]:  # the last may end in the final column, checked via y below
            assert ex[0] == tok.bos_id and ex[-1] == tok.eos_id and ex.count(tok.sep_id) == 1
            prompt = tok.decode(ex[1 : ex.index(tok.sep_id)])
            target = tok.decode(ex[ex.index(tok.sep_id) + 1 : -1])
            task = next(t for t in TASKS.values() if prompt.startswith(t.tag))
            assert task.solve(prompt) == target
            n_examples += 1
        # loss exactly on answer tokens: after SEP up to and including EOS
        mask, in_answer = [], False
        for prev in xr:  # y[i] predicts x[i + 1]: supervised from just after SEP through EOS
            in_answer = (in_answer or prev == tok.sep_id) and prev not in (tok.eos_id, tok.pad_id)
            mask.append(in_answer)
        got = [v != IGNORE for v in yr]
        assert got == mask
    assert n_examples > 50


def test_fast_path_equals_generic_path():
    a = AlgoStream(ByteTokenizer(), list(TASKS), seq_len=96, batch_size=4, seed=5)
    b = AlgoStream(SlowBytes(), list(TASKS), seq_len=96, batch_size=4, seed=5)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_seeded_and_resumable():
    tok = ByteTokenizer()
    mk = lambda seed: AlgoStream(tok, list(TASKS), seq_len=64, batch_size=4, seed=seed, block_batches=3)  # noqa: E731
    a, b = mk(3), mk(3)
    assert all(torch.equal(a.next_batch()[0], b.next_batch()[0]) for _ in range(4))
    assert not torch.equal(mk(3).next_batch()[0], mk(4).next_batch()[0])
    state = a.state_dict()
    expect = [a.next_batch() for _ in range(7)]
    c = mk(99)
    c.load_state_dict(state)
    got = [c.next_batch() for _ in range(7)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(expect, got))


def test_length_override_and_too_long():
    tok = ByteTokenizer()
    s = AlgoStream(tok, ["copy"], seq_len=64, batch_size=2, seed=0, lengths={"copy": (5, 5)})
    x, _ = s.next_batch()
    assert all(len(ex) == 1 + 4 + 5 + 1 + 1 + 5 + 1 for ex in split_examples(tok, x[0].tolist())[:-1])
    with pytest.raises(LooplabError, match="more than --seq_len"):
        AlgoStream(tok, ["copy"], seq_len=16, batch_size=2, seed=0).next_batch()


def test_encode_example():
    tok = ByteTokenizer()
    ctx, ans = encode_example(tok, "SUC:9=", "10")
    assert ctx == [tok.bos_id, *b"SUC:9=", tok.sep_id] and ans == [ord("1"), ord("0"), tok.eos_id]


def test_fills_rows():
    s = AlgoStream(ByteTokenizer(), list(TASKS), seq_len=256, batch_size=8, seed=0)
    x, _ = s.next_batch()
    assert (x != 256).float().mean() > 0.85
    assert np.isfinite(x.float().mean().item())
