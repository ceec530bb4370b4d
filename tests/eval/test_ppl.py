"""Perplexity and bits per byte: the arithmetic on a known case, the windows and the token cap."""

from __future__ import annotations

import math

import pytest
import torch

from looplab.errors import LooplabError
from looplab.eval import ppl
from looplab.models.base import ModelOutput
from tests.helpers import tiny_model

V = 260


class Uniform(torch.nn.Module):
    """Equal logits for every token: NLL is ln V per token whatever the text."""

    def __init__(self, max_seq_len: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.cfg = type("Cfg", (), {"max_seq_len": max_seq_len})()

    def forward(self, idx: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=torch.zeros(*idx.shape, V) + self.w)


def test_uniform_model_known_case(byte_tok, tmp_path):
    """ASCII text and byte tokens: one token per byte, so bits per byte = log2(V) and ppl = V."""
    path = tmp_path / "t.txt"
    path.write_text("abc def\n\nghij klm nop\n\nq")
    res = ppl.run_ppl(Uniform(max_seq_len=5), byte_tok, path=str(path), max_tokens=10_000)
    assert res["tokens"] == res["bytes"] == len("abc def") + len("ghij klm nop") + len("q")
    assert res["documents"] == 3 and res["window"] == 5
    assert res["bits_per_byte"] == pytest.approx(math.log2(V))
    assert res["ppl"] == pytest.approx(V)


def test_bits_per_byte_arithmetic():
    assert ppl.bits_per_byte(8 * math.log(2), 4) == pytest.approx(2.0)


def test_every_document_token_scored_once(byte_tok):
    stream, n_bytes = ppl.token_stream(byte_tok, ["hello", "wörld", "x" * 50], cap=12)
    assert stream == [byte_tok.bos_id, *b"hello", byte_tok.bos_id, *"wörld".encode()]  # the third doc would pass 12
    assert n_bytes == 5 + len("wörld".encode())
    model = tiny_model("baseline")
    for window in (3, 4, 100):
        _, count = ppl.stream_nll(model, stream, window=window, ignore_id=byte_tok.bos_id, batch_size=2)
        assert count == len(stream) - 2  # every token but the two bos
    nll_a, _ = ppl.stream_nll(model, stream, window=100, ignore_id=byte_tok.bos_id)
    nll_b, _ = ppl.stream_nll(model, stream, window=100, ignore_id=byte_tok.bos_id, batch_size=1)
    assert nll_a == pytest.approx(nll_b)


def test_first_document_cut_to_cap(byte_tok):
    stream, n_bytes = ppl.token_stream(byte_tok, ["abcdefghij"], cap=4)
    assert stream == [byte_tok.bos_id, *b"abcd"] and n_bytes == 4


def test_missing_text_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(ppl, "DEFAULT_LANG_DATA", tmp_path / "absent.txt")
    with pytest.raises(LooplabError, match="pass --lang_data"):
        ppl.resolve_lang_data("")
    assert ppl.resolve_lang_data("given.txt") == "given.txt"


class Recording(Uniform):
    """Uniform, remembering the width of every window it scores."""

    def __init__(self, max_seq_len: int) -> None:
        super().__init__(max_seq_len)
        self.widths: list[int] = []

    def forward(self, idx: torch.Tensor) -> ModelOutput:
        self.widths.append(idx.shape[1])
        return super().forward(idx)


def test_windows_of_the_training_length_and_the_long_window_apart(byte_tok, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("x" * 100 + "\n\n" + "y" * 50)
    model = Recording(max_seq_len=64)
    res = ppl.run_ppl(model, byte_tok, path=str(path), max_tokens=10_000, window=16)
    assert res["window"] == 16 and res["long_window"]["window"] == 64
    assert model.widths == [16, 16, 64]  # 10 windows of 16 in two batches of 8, then 3 windows of 64
    assert res["ppl"] == pytest.approx(V) and res["long_window"]["ppl"] == pytest.approx(V)
    assert "long_window" not in ppl.run_ppl(Uniform(16), byte_tok, path=str(path), max_tokens=10_000, window=16)


def test_hub_scores_the_window_the_checkpoint_trained_at(byte_tok, lang_file, tmp_path):
    from looplab.checkpoint import save_checkpoint
    from looplab.config import EvalConfig
    from looplab.eval.hub import evaluate_checkpoint

    path = tmp_path / "best_model.pt"
    save_checkpoint(path, tiny_model("baseline"), byte_tok, meta={"tasks": ["copy"], "seq_len": 24})
    _, doc = evaluate_checkpoint(str(path), EvalConfig(suite="ppl", lang_data=str(lang_file)), threads=1)
    res = doc["results"]
    assert res["window"] == 24 and res["window_source"] == "training seq_len"
    assert res["long_window"]["window"] == 1024  # tiny's max_seq_len, reported apart
