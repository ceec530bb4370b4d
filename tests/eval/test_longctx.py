"""Needle in a haystack: the needle sits where the cell says, prompts have the claimed length, and
shared-prefix decoding equals plain greedy decoding."""

from __future__ import annotations

import pytest
import torch

from looplab.data.packing import encode_example
from looplab.data.tasks import PASSKEY_FILLER, TASKS
from looplab.eval.decode import greedy
from looplab.eval.longctx import filler_units, greedy_shared_prefix, needle_pairs, run_longctx
from tests.helpers import tiny_model


@pytest.mark.parametrize("length", [256, 1024, 4096])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_needle_is_where_it_claims(byte_tok, length, depth):
    units = filler_units(byte_tok, length)
    pairs = needle_pairs(byte_tok, length, depth, 4, seed=7)
    for prompt, key in pairs:
        before, after = prompt[len("KEY:") : prompt.index("the key is ")], prompt[prompt.index(key) + len(key) + 2 : -1]
        assert before == PASSKEY_FILLER * round(depth * units)  # only filler before the needle, and the right amount
        assert after == PASSKEY_FILLER * (units - round(depth * units))
        assert TASKS["passkey"].solve(prompt) == key and len(key) == 5
        tokens = len(encode_example(byte_tok, prompt, key)[0])
        assert abs(tokens - length) <= len(PASSKEY_FILLER)  # within one filler unit of the claimed length
        needle_at = (len("KEY:") + len(before)) / (tokens - len("KEY:") - 20)
        assert abs(needle_at - depth) < 0.05 + len(PASSKEY_FILLER) / length
    assert len({k for _, k in pairs}) > 1  # the keys vary across trials


def test_cells_are_seeded(byte_tok):
    assert needle_pairs(byte_tok, 512, 0.5, 5, seed=1) == needle_pairs(byte_tok, 512, 0.5, 5, seed=1)
    assert needle_pairs(byte_tok, 512, 0.5, 5, seed=1) != needle_pairs(byte_tok, 512, 0.5, 5, seed=2)


@pytest.mark.parametrize("variant", ["baseline", "shared_loop", "latent", "ssm"])
@pytest.mark.parametrize("depth", [0.0, 0.9])
def test_shared_prefix_equals_greedy(byte_tok, variant, depth):
    torch.manual_seed(0)
    model = tiny_model(variant)
    contexts = [encode_example(byte_tok, p, t)[0] for p, t in needle_pairs(byte_tok, 200, depth, 5, seed=3)]
    kw = dict(max_new_tokens=6, eos_id=byte_tok.eos_id, batch_size=2)
    assert greedy_shared_prefix(model, contexts, **kw) == greedy(model, contexts, **kw)


def test_run_longctx_reports_every_cell(byte_tok):
    res = run_longctx(tiny_model("baseline"), byte_tok, lengths=(96, 128), depths=(0.0, 1.0), trials=2, seed=0)
    assert set(res["cells"]) == {"96", "128"} and set(res["cells"]["96"]) == {"0", "1"}
    assert all(c["n"] == 2 for row in res["cells"].values() for c in row.values())
    assert set(res["by_depth"]) == {"0", "1"} and 0 <= res["acc"] <= 1


def test_lengths_past_absolute_positions_are_skipped(byte_tok):
    model = tiny_model("absolute", max_seq_len=128)
    res = run_longctx(model, byte_tok, lengths=(96, 512), depths=(0.5,), trials=2, seed=0)
    assert set(res["cells"]) == {"96"} and "absolute-position" in res["skipped"]["512"]
