"""Language data: every input kind, the token cache, the held-out split, the batch stream."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from looplab.data import lang
from looplab.data.lang import LangStream, load_corpus, read_documents, token_array, validation_batches
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "little_stories.txt"


def test_txt_with_endoftext_and_with_blank_lines(tmp_path):
    docs = read_documents(str(FIXTURE))
    assert len(docs) == 12 and docs[0].startswith("Pip the hedgehog") and all("<|endoftext|>" not in d for d in docs)
    blank = tmp_path / "b.txt"
    blank.write_text("one\nstill one\n\n\ntwo\n\nthree\n")
    assert read_documents(str(blank)) == ["one\nstill one", "two", "three"]


def test_directory_jsonl_and_text_field(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha\n<|endoftext|>\nbeta\n")
    (tmp_path / "sub" / "c.jsonl").write_text(json.dumps({"body": "gamma"}) + "\n\n" + json.dumps({"body": "delta"}))
    (tmp_path / "notes.md").write_text("ignored")
    with pytest.raises(LooplabError, match=r"c.jsonl:1: record has no 'text' field"):
        read_documents(str(tmp_path))
    assert read_documents(str(tmp_path), text_field="body") == ["alpha", "beta", "gamma", "delta"]


def test_parquet(tmp_path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pd = pytest.importorskip("pandas", reason="needs pyarrow or pandas")
        pd.DataFrame({"text": ["one", "two"]}).to_parquet(tmp_path / "d.parquet")
    else:
        pq.write_table(pa.table({"text": ["one", "two"]}), tmp_path / "d.parquet")
    assert read_documents(str(tmp_path / "d.parquet")) == ["one", "two"]
    with pytest.raises(LooplabError, match="no column 'story'"):
        read_documents(str(tmp_path / "d.parquet"), text_field="story")


def test_hf_needs_permission_and_reads_rows(monkeypatch):
    with pytest.raises(LooplabError, match="--allow_network"):
        read_documents("hf:someone/stories")
    calls = []

    def fake_rows(name, split):
        calls.append((name, split))
        return [{"text": "first story"}, {"text": "  "}, {"text": "second story"}]

    monkeypatch.setattr(lang, "_hf_rows", fake_rows)
    assert read_documents("hf:someone/stories", allow_network=True) == ["first story", "second story"]
    assert calls == [("someone/stories", "train")]
    with pytest.raises(LooplabError, match="row 0 has no 'body' field"):
        read_documents("hf:someone/stories", allow_network=True, text_field="body")


@pytest.mark.parametrize("name, content, needle", [
    ("missing.txt", None, "does not exist"),
    ("data.csv", "a,b", "unknown extension '.csv'"),
    ("bad.jsonl", '{"text": "ok"}\n{not json', r"bad.jsonl:2: invalid JSON"),
    ("num.jsonl", '{"text": 3}', r"num.jsonl:1: field 'text' is int"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, name, content, needle):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(LooplabError, match=needle) as e:
        read_documents(str(tmp_path / name))
    assert "\n" not in str(e.value)


class OtherTokenizer(ByteTokenizer):
    fingerprint = "a-different-tokenizer"


def test_cache_is_reused_and_keyed_by_contents_and_tokenizer(tmp_path, monkeypatch):
    src = tmp_path / "s.txt"
    src.write_text(FIXTURE.read_text())
    cache = tmp_path / "cache"
    tok = ByteTokenizer()
    first = token_array(str(src), tok, cache)
    assert isinstance(first, np.memmap) and first[-1] == tok.eos_id
    assert tok.decode(first[: 40].tolist()).startswith("Pip the hedgehog")
    monkeypatch.setattr(lang, "read_documents", lambda *a, **k: pytest.fail("tokenised twice"))
    again = load_corpus(str(src), tok, cache)
    assert np.array_equal(again.tokens, first)
    monkeypatch.undo()
    other = load_corpus(str(src), OtherTokenizer(), cache)
    src.write_text(FIXTURE.read_text() + "\n<|endoftext|>\nOne more story.\n")
    grown = load_corpus(str(src), tok, cache)
    assert len({again.key, other.key, grown.key}) == 3 and grown.n_docs == again.n_docs + 1
    assert len(list(cache.glob("*.tokens.npy"))) == 3


def test_validation_never_overlaps_training(tmp_path):
    src = tmp_path / "many.txt"
    src.write_text("\n<|endoftext|>\n".join(f"story {i:03d} " + "words " * (i % 7 + 3) for i in range(200)))
    tok = ByteTokenizer()
    corpus = load_corpus(str(src), tok, tmp_path / "cache")
    train, val = corpus.split(0.1)
    assert set(train).isdisjoint(val) and len(train) + len(val) == corpus.n_docs and 5 < len(val) < 40
    assert np.array_equal(corpus.split(0.1)[1], val)  # deterministic
    stream = LangStream(corpus, train, seq_len=32, batch_size=4, seed=0)
    seen = set()
    for _ in range(3 * stream.epoch_tokens // stream.tokens_per_batch):  # three epochs
        batch = stream.next_batch()
        x, _ = batch.tokens, batch.targets
        seen |= {int(m) for row in x.tolist() for m in re.findall(r"story (\d{3})", tok.decode(row))}
    assert seen and seen <= set(train.tolist())
    held = {int(m) for b in validation_batches(corpus, val, seq_len=32, batch_size=4, max_batches=50)
            for row in b.tokens.tolist() for m in re.findall(r"story (\d{3})", tok.decode(row))}
    assert held and held <= set(val.tolist())


def test_stream_batches_are_shifted_seeded_and_resumable(tmp_path):
    corpus = load_corpus(str(FIXTURE), ByteTokenizer(), tmp_path)
    docs = np.arange(corpus.n_docs)

    def make(seed):
        return LangStream(corpus, docs, seq_len=48, batch_size=3, seed=seed)

    a = make(0)
    batch = a.next_batch()
    x, y = batch.tokens, batch.targets
    assert x.shape == y.shape == (3, 48) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and x[1, 0] == y[0, -1]
    assert not torch.equal(make(0).next_batch().tokens, make(1).next_batch().tokens)
    for _ in range(40):  # past an epoch boundary
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))
    expect = [a.next_batch() for _ in range(5)]
    b = make(0)
    b.load_state_dict(state)
    assert all(torch.equal(p.tokens, q.tokens) and torch.equal(p.targets, q.targets) for p, q in zip(expect, [b.next_batch() for _ in range(5)]))
    assert state["epoch"] >= 1
    with pytest.raises(LooplabError, match="differs"):
        make(5).load_state_dict(state)
