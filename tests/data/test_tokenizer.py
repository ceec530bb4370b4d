"""Tokenizers: round trips, special ids, offline hub resolution, state round trips without the files."""

from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from looplab.data.tokenizer import (
    ByteTokenizer,
    HFTokenizer,
    SentencePieceTokenizer,
    check_fits,
    load_tokenizer,
    tokenizer_from_state,
)
from looplab.errors import LooplabError

REPO = Path(__file__).resolve().parents[2]
LLAMA = REPO.parent / "shared" / "data" / "tokenizers" / "llama2_tokenizer.model"

CORPUS = [
    "hello world, the quick brown fox jumps over the lazy dog",
    "hello there world; a lazy fox sleeps while the dog runs",
    "numbers 0 1 2 3 4 5 6 7 8 9 and words: brown, quick, over",
    "the world says hello back to the quick fox and the dog",
]
TEXTS = ["hello world", "the quick brown fox", "a lazy dog runs over 42 foxes"]


def saved_and_loaded(state: dict) -> dict:
    """The state as a checkpoint would return it: through torch.save and a weights-only load."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def train_bpe_json(specials: list[str]) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok.to_str()


@pytest.fixture(scope="module")
def bpe_json() -> str:
    return train_bpe_json(["<s>", "</s>", "<my_pad>"])


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("sp")
    (d / "corpus.txt").write_text("\n".join(CORPUS * 5) + "\n")
    spm.SentencePieceTrainer.train(input=str(d / "corpus.txt"), model_prefix=str(d / "tiny"), vocab_size=60,
                                   model_type="bpe", character_coverage=1.0, minloglevel=2, num_threads=1)
    return d / "tiny.model"


def assert_same_tokenizer(a, b) -> None:
    assert (a.name, a.vocab_size, a.specials, a.fingerprint) == (b.name, b.vocab_size, b.specials, b.fingerprint)
    for text in TEXTS:
        assert a.encode(text) == b.encode(text)


# bytes

@pytest.mark.parametrize("text", ["hello, world", "naïve café ∑ 日本語", "emoji 🙂👍🏽", ""])
def test_bytes_round_trip(byte_tok, text):
    ids = byte_tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert byte_tok.decode(ids) == text


def test_bytes_specials(byte_tok):
    assert (byte_tok.pad_id, byte_tok.bos_id, byte_tok.eos_id, byte_tok.sep_id) == (256, 257, 258, 259)
    assert byte_tok.vocab_size == 260 and byte_tok.is_byte_level
    ids = [byte_tok.bos_id, *byte_tok.encode("ab"), byte_tok.sep_id, *byte_tok.encode("c"), byte_tok.eos_id,
           byte_tok.pad_id]
    assert byte_tok.decode(ids) == "abc"
    assert byte_tok.decode([0xF0, 0x9F]) == "\ufffd"  # a cut multi-byte character decodes with a replacement


def test_bytes_digits_are_single_tokens(byte_tok):
    assert byte_tok.encode("0123456789") == list(range(48, 58))


def test_bytes_load_and_state(byte_tok):
    assert isinstance(load_tokenizer(None), ByteTokenizer) and isinstance(load_tokenizer("bytes"), ByteTokenizer)
    assert byte_tok.state_dict() == {"kind": "bytes"}
    assert_same_tokenizer(tokenizer_from_state(saved_and_loaded(byte_tok.state_dict())), byte_tok)


# Hugging Face tokenizer.json and directories

def test_hf_file_round_trip_and_added_specials(tmp_path, bpe_json):
    path = tmp_path / "tokenizer.json"
    path.write_text(bpe_json)
    tok = load_tokenizer(str(path))
    assert isinstance(tok, HFTokenizer) and not tok.is_byte_level
    assert tok.name == f"tokenizer.json:{path}"
    for text in TEXTS + ["unseen: zebra ☃"]:
        assert tok.decode(tok.encode(text)) == text
    base = tok.base_size
    assert tok.bos_id == tok.encode("<s>")[0] and tok.eos_id == tok.encode("</s>")[0]
    assert (tok.pad_id, tok.sep_id, tok.vocab_size) == (base, base + 1, base + 2)  # "<my_pad>" is no known name
    ids = tok.encode("hello world")
    assert tok.decode([tok.bos_id, *ids, tok.sep_id, tok.eos_id, tok.pad_id]) == "hello world"


def test_hf_without_any_specials_adds_all_four(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(train_bpe_json([]))
    tok = load_tokenizer(str(path))
    base = tok.base_size
    assert tok.specials == {"pad": base, "sep": base + 1, "bos": base + 2, "eos": base + 3}
    assert tok.vocab_size == base + 4


def test_hf_directory_uses_its_config(tmp_path, bpe_json):
    (tmp_path / "tokenizer.json").write_text(bpe_json)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": "<my_pad>"}))
    tok = load_tokenizer(str(tmp_path))
    file_tok = load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert tok.name == f"hf:{tmp_path}"
    assert tok.pad_id == tok.encode("<my_pad>")[0] < tok.base_size
    assert (tok.sep_id, tok.vocab_size) == (tok.base_size, tok.base_size + 1)
    assert tok.encode("hello world") == file_tok.encode("hello world")
    assert tok.fingerprint != file_tok.fingerprint  # same file, different special ids


def test_hf_pad_shared_with_eos_gets_its_own_id(tmp_path, bpe_json):
    (tmp_path / "tokenizer.json").write_text(bpe_json)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "pad_token": "</s>"}))
    tok = load_tokenizer(str(tmp_path))
    assert tok.eos_id == tok.encode("</s>")[0] and tok.pad_id == tok.base_size
    assert len(set(tok.specials.values())) == 4


def test_hf_state_rebuilds_without_the_file(tmp_path, bpe_json):
    (tmp_path / "tokenizer.json").write_text(bpe_json)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<my_pad>"}))
    tok = load_tokenizer(str(tmp_path))
    state = saved_and_loaded(tok.state_dict())
    assert state["data"].dtype == torch.uint8
    shutil.rmtree(tmp_path)
    assert_same_tokenizer(tokenizer_from_state(state), tok)


def test_hf_directory_converted_by_transformers(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "the"]))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    tok = load_tokenizer(str(tmp_path))
    assert tok.encode("Hello the world") == [4, 6, 5]
    base = tok.base_size  # transformers may add tokens of its own ([MASK]) after the file's vocabulary
    assert (tok.pad_id, tok.sep_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 3, base, base + 1, base + 2)
    assert tok.decode([tok.bos_id, 4, 5, tok.sep_id, tok.eos_id]) == "hello world"
    state = saved_and_loaded(tok.state_dict())
    shutil.rmtree(tmp_path)
    assert_same_tokenizer(tokenizer_from_state(state), tok)


# SentencePiece

def test_sentencepiece_round_trip_and_state(tmp_path, sp_model):
    path = tmp_path / "tiny.model"
    shutil.copy(sp_model, path)
    tok = load_tokenizer(str(path))
    assert isinstance(tok, SentencePieceTokenizer) and tok.name == "sentencepiece:tiny.model"
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    assert (tok.pad_id, tok.sep_id, tok.vocab_size) == (60, 61, 62)
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(0 <= i < 60 for i in ids) and tok.bos_id not in ids
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.sep_id]) == text
    state = saved_and_loaded(tok.state_dict())
    path.unlink()
    assert_same_tokenizer(tokenizer_from_state(state), tok)


def test_sentencepiece_keeps_a_defined_pad(tmp_path):
    import sentencepiece as spm

    (tmp_path / "c.txt").write_text("\n".join(CORPUS) + "\n")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "c.txt"), model_prefix=str(tmp_path / "p"), vocab_size=50,
                                   pad_id=3, unk_id=0, bos_id=1, eos_id=2, minloglevel=2, num_threads=1)
    tok = load_tokenizer(str(tmp_path / "p.model"))
    assert tok.specials == {"bos": 1, "eos": 2, "pad": 3, "sep": 50} and tok.vocab_size == 51


def test_directory_with_only_a_sentencepiece_model(tmp_path, sp_model):
    shutil.copy(sp_model, tmp_path / "tokenizer.model")
    tok = load_tokenizer(str(tmp_path))
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.fingerprint == load_tokenizer(str(sp_model)).fingerprint


@pytest.mark.skipif(not LLAMA.is_file(), reason="shared Llama-2 tokenizer not present")
def test_llama2_model():
    tok = load_tokenizer(str(LLAMA))
    assert tok.name == "sentencepiece:llama2_tokenizer.model"
    assert tok.encode("Hello world") == [15043, 3186]
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.sep_id, tok.vocab_size) == (1, 2, 32000, 32001, 32002)
    assert tok.decode([1, 15043, 3186, 2, 32000]) == "Hello world"
    assert_same_tokenizer(tokenizer_from_state(saved_and_loaded(tok.state_dict())), tok)


# hub names resolve only from the local cache

@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache under tmp_path, with every socket connection refused."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path / "hf" / "hub"


def fake_snapshot(cache: Path, repo: str, files: dict[str, str], commit: str = "0123abcd" * 5) -> Path:
    storage = cache / ("models--" + repo.replace("/", "--"))
    snap = storage / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, text in files.items():
        (snap / name).write_text(text)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    return snap


def test_hub_name_not_cached_needs_allow_network(hub_cache):
    with pytest.raises(LooplabError, match="--allow_network") as err:
        load_tokenizer("someorg/missing-model")
    assert "someorg/missing-model" in str(err.value) and "local Hugging Face cache" in str(err.value)


def test_hub_name_resolves_offline_from_cache(hub_cache, bpe_json):
    fake_snapshot(hub_cache, "someorg/tiny-bpe", {"tokenizer.json": bpe_json,
                                                  "tokenizer_config.json": json.dumps({"pad_token": "<my_pad>"})})
    tok = load_tokenizer("someorg/tiny-bpe")
    assert isinstance(tok, HFTokenizer) and tok.name == "hf:someorg/tiny-bpe"
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert tok.pad_id == tok.encode("<my_pad>")[0]


def test_hub_download_only_when_allowed(hub_cache, bpe_json, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, *, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(fake_snapshot(hub_cache, repo_id, {"tokenizer.json": bpe_json}))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    with pytest.raises(LooplabError, match="--allow_network"):
        load_tokenizer("someorg/remote")
    assert calls == [True]
    tok = load_tokenizer("someorg/remote", allow_network=True)
    assert calls == [True, True, False] and tok.name == "hf:someorg/remote"


# errors and fingerprints

@pytest.mark.parametrize("spec", ["missing/tokenizer.json", "./nowhere.model", "byts", "/no/such/dir/"])
def test_missing_path_names_the_forms(spec):
    with pytest.raises(LooplabError, match="tokenizer.json") as err:
        load_tokenizer(spec)
    assert spec in str(err.value) and ".model" in str(err.value) and "bytes" in str(err.value)


def test_unknown_file_type(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(LooplabError, match=r"neither a SentencePiece \.model nor a tokenizer\.json"):
        load_tokenizer(str(tmp_path / "vocab.txt"))


def test_corrupt_sentencepiece_file(tmp_path):
    (tmp_path / "bad.model").write_bytes(b"not a protobuf at all")
    with pytest.raises(LooplabError, match="not a valid SentencePiece model"):
        load_tokenizer(str(tmp_path / "bad.model"))


def test_corrupt_states(sp_model, bpe_json):
    sp_state = load_tokenizer(str(sp_model)).state_dict()
    hf_state = HFTokenizer(bpe_json, name="t").state_dict()
    bad = [
        None,
        {},
        {"kind": "wordpiece"},
        {"kind": "hf", "name": "t"},
        {**hf_state, "data": hf_state["data"].to(torch.int64)},
        {**sp_state, "data": sp_state["data"][: len(sp_state["data"]) // 2]},
        {**hf_state, "data": hf_state["data"][:100]},
        {**hf_state, "vocab_size": hf_state["vocab_size"] + 1},
        {**sp_state, "specials": {**sp_state["specials"], "pad": 7}},
        {**hf_state, "specials": {"pad": "x"}},
    ]
    for state in bad:
        with pytest.raises(LooplabError):
            tokenizer_from_state(state)
    with pytest.raises(LooplabError, match="'bytes', 'sentencepiece', 'hf'"):
        tokenizer_from_state({"kind": "wordpiece"})


def test_check_fits(byte_tok):
    check_fits(byte_tok, 260)
    for wrong in (259, 261):
        with pytest.raises(LooplabError, match=f"needs vocab_size 260 but the model has {wrong}"):
            check_fits(byte_tok, wrong)


def test_fingerprints(tmp_path, sp_model, bpe_json):
    (tmp_path / "a.json").write_text(bpe_json)
    (tmp_path / "b.json").write_text(bpe_json)
    (tmp_path / "c.json").write_text(train_bpe_json(["<s>", "</s>"]))
    a, b, c = (load_tokenizer(str(tmp_path / f)) for f in ("a.json", "b.json", "c.json"))
    sp = load_tokenizer(str(sp_model))
    assert ByteTokenizer().fingerprint == ByteTokenizer().fingerprint
    assert a.fingerprint == b.fingerprint  # same content under another path is the same tokenizer
    assert load_tokenizer(str(sp_model)).fingerprint == sp.fingerprint
    prints = [ByteTokenizer().fingerprint, a.fingerprint, c.fingerprint, sp.fingerprint]
    assert len(set(prints)) == len(prints)
    assert all(len(p) == 64 and int(p, 16) >= 0 for p in prints)
