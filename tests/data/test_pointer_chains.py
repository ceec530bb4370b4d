"""Pointer chains: generator against the independent solver, per-loop targets, splits, seeding, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from looplab.data.pointer_chains import (
    IGNORE,
    IID_HOPS,
    OOD_HOPS,
    ChainCodec,
    ChainStream,
    digit_guess_chance,
    draw,
    eval_set,
    generate,
    is_eval,
    solve,
    write_task_file,
)
from looplab.errors import LooplabError

HALT = 260


@pytest.mark.parametrize("hops", [1, 2, 5, 6, 12])
def test_every_chain_matches_the_solver(hops):
    ch = generate(np.random.default_rng(hops), 300, hops)
    assert ch.hops == hops and len({len(p) for p, _ in ch.texts()}) == 1
    for prompt, steps in ch.texts():
        assert solve(prompt) == steps
        assert steps[-1].isdigit() and all(c.isalpha() for c in steps[:-1])
        names = [b.split("=")[0] for b in prompt.split("? ")[0].rstrip("; ").split("; ")]
        assert len(names) == len(set(names))  # every name bound once: the chain is well defined


def test_example_by_hand():
    assert solve("q=d; d=7; x=q; k=3; m=x; ? m") == "xqd7"
    assert solve("a=5; b=a; ? a") == "5"


def test_per_loop_targets(byte_tok):
    ch = generate(np.random.default_rng(0), 4, 3)
    codec = ChainCodec(byte_tok, HALT, specials=True)
    y = codec.targets(ch, width=6)
    for row, (_, steps) in zip(y.tolist(), ch.texts()):
        assert row == [ord(c) for c in steps] + [HALT, IGNORE, IGNORE]
    x = codec.inputs(ch)
    assert x[0, 0] == byte_tok.bos_id and x[0, -1] == byte_tok.sep_id
    assert bytes(x[0, 1:-1].tolist()).decode() == ch.texts()[0][0]


def test_stream_batches_mix_hops_and_resume(byte_tok):
    codec = ChainCodec(byte_tok, HALT, specials=False)
    s = ChainStream(codec, batch_size=64, seed=3)
    batch = s.next_batch()
    x, y = batch.tokens, batch.targets
    hops = (y == HALT).int().argmax(1)
    assert set(hops.tolist()) == {1, 2, 3, 4, 5} and y.shape[1] == 6 and x.shape[0] == 64
    for row, target in zip(x.tolist(), y.tolist()):
        steps = solve(bytes(row).decode())
        assert target[: len(steps) + 1] == [ord(c) for c in steps] + [HALT]
    assert not is_eval(x.numpy().astype(np.uint8)).any()  # training split only
    state = s.state_dict()
    a = s.next_batch()
    s2 = ChainStream(codec, batch_size=64, seed=99)
    s2.load_state_dict(state)
    b = s2.next_batch()
    assert (a.tokens == b.tokens).all() and (a.targets == b.targets).all()
    with pytest.raises(LooplabError, match="batch size"):
        ChainStream(codec, batch_size=8, seed=0).load_state_dict(state)


def test_same_seed_same_chains():
    a, b = generate(np.random.default_rng(5), 50, 4), generate(np.random.default_rng(5), 50, 4)
    assert (a.prompt == b.prompt).all() and (a.steps == b.steps).all()
    assert (eval_set(6, 30, 1).prompt == eval_set(6, 30, 1).prompt).all()


@pytest.mark.parametrize("hops", IID_HOPS + OOD_HOPS)
def test_evaluation_sets_are_disjoint_from_training(hops):
    ev = eval_set(hops, 200)
    assert len(ev.prompt) == 200 and is_eval(ev.prompt).all()
    train = draw(np.random.default_rng(0), 5000, hops, "train")
    assert not is_eval(train.prompt).any()
    assert not {p.tobytes() for p in ev.prompt} & {p.tobytes() for p in train.prompt}


def test_generation_is_fast():
    t = time.perf_counter()
    ch = generate(np.random.default_rng(0), 50_000, 5)
    assert time.perf_counter() - t < 2.0 and len(ch.prompt) == 50_000


def test_bad_hops_and_tokenizers(byte_tok):
    with pytest.raises(LooplabError, match="hops"):
        generate(np.random.default_rng(0), 2, 24)

    class Splitting:
        name = "split"

        def encode(self, text):
            return [1, 2]

    with pytest.raises(LooplabError, match="one token"):
        ChainCodec(Splitting(), HALT, specials=False)


def test_task_file_targets(tmp_path):
    """The base's task file: training-split prompts, target the whole chain or the value alone."""
    write_task_file(str(tmp_path / "chain.jsonl"), 3, target="chain")
    write_task_file(str(tmp_path / "value.jsonl"), 3, target="value")
    chain = [json.loads(line) for line in (tmp_path / "chain.jsonl").read_text().splitlines()]
    value = [json.loads(line) for line in (tmp_path / "value.jsonl").read_text().splitlines()]
    assert [r["length"] for r in chain] == [h for h in range(1, 6) for _ in range(3)]
    assert all(r["target"] == solve(r["prompt"]) and len(r["target"]) == r["length"] for r in chain)
    assert [r["target"] for r in value] == [r["target"][-1] for r in chain]
    prompts = np.array([list(r["prompt"].encode()) for r in chain if r["length"] == 5], dtype=np.uint8)
    assert not is_eval(prompts).any()
    with pytest.raises(LooplabError, match="allowed: chain, value"):
        write_task_file(str(tmp_path / "x.jsonl"), 1, target="digits")


def test_digit_guess_chance_against_the_solver_by_hand():
    ch = generate(np.random.default_rng(3), 50, 4)
    expected = []
    for prompt, _ in ch.texts():
        body = prompt.split("? ")[0].strip().rstrip(";")
        digits = {b.split("=")[1] for b in body.split("; ") if b.split("=")[1].isdigit()}
        expected.append(1 / len(digits))
    assert digit_guess_chance(ch) == pytest.approx(float(np.mean(expected)))
