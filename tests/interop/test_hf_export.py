"""`looplab export --to hf`: transformers loads the directory and computes what looplab computes."""

from __future__ import annotations

import json

import pytest
import torch

from looplab.checkpoint import save_checkpoint
from looplab.cli import main
from looplab.data.tokenizer import ByteTokenizer, load_tokenizer
from looplab.errors import LooplabError
from looplab.eval.decode import greedy
from looplab.interop import export_checkpoint, load_exported
from tests.helpers import tiny_model

transformers = pytest.importorskip("transformers")

TEXTS = ["Hello world", "naïve café — 日本語 🙂", "  two  spaces\n\ttab end ", "", "a=1; b=[2, 3]"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def exported(tmp_path, variant: str = "baseline", **kw):
    model, tok = tiny_model(variant, **kw), ByteTokenizer()
    save_checkpoint(tmp_path / "model.pt", model, tok)
    return model, tok, export_checkpoint(tmp_path / "model.pt", "hf", tmp_path / "hf")


@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 2, "tie_embeddings": False}])
def test_transformers_logits_and_greedy_tokens_equal_looplab(tmp_path, kw):
    model, tok, (fmt, files) = exported(tmp_path, **kw)
    assert fmt == "hf" and {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    x = torch.randint(0, 256, (2, 23))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)
        out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, do_sample=False)
    ours = greedy(model, x.tolist(), max_new_tokens=8, eos_id=tok.eos_id)
    theirs = [row[: row.index(tok.eos_id) + 1] if tok.eos_id in row else row for row in out[:, 23:].tolist()]
    assert theirs == ours


def test_byte_tokenizer_loads_in_transformers_and_matches(tmp_path):
    _, tok, _ = exported(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, hf.sep_token_id) == (257, 258, 256, 259)
    assert len(hf) == tok.vocab_size
    again = load_tokenizer(str(tmp_path / "hf"))  # looplab reads its own export back
    assert again.specials == tok.specials and again.vocab_size == tok.vocab_size
    for text in TEXTS:
        ids = tok.encode(text)
        assert hf.encode(text, add_special_tokens=False) == ids == again.encode(text)
        assert hf.decode(ids) == text == tok.decode(ids)
        assert hf.decode([tok.bos_id, *ids, tok.eos_id], skip_special_tokens=True) == text


def test_config_names_looplab_origin(tmp_path):
    model, tok, _ = exported(tmp_path)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["looplab"]["model_config"] == model.cfg.to_dict()
    assert cfg["eos_token_id"] == tok.eos_id and cfg["tie_word_embeddings"] is True


def test_other_variants_fall_back_to_safetensors(tmp_path, capsys):
    model = tiny_model("shared_loop")
    save_checkpoint(tmp_path / "loop.pt", model, ByteTokenizer())
    assert main(["export", str(tmp_path / "loop.pt"), "--to", "hf", str(tmp_path / "out")]) == 0
    assert "no transformers equivalent" in capsys.readouterr().out
    back = load_exported(tmp_path / "out")
    x = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(back.model(x).logits, model(x).logits, rtol=0, atol=0)
    with pytest.raises(LooplabError, match="no transformers equivalent"):
        export_checkpoint(tmp_path / "loop.pt", "hf", tmp_path / "strict", strict=True)


@pytest.mark.parametrize("args, needle", [
    (["missing.pt", "--to", "hf", "out"], "does not exist"),
    (["model.pt", "--to", "hf", "full"], "already holds files"),
    (["model.pt", "--to", "hf", "model.pt"], "is a file"),
    (["loop.pt", "--to", "hf", "strict", "--strict"], "no transformers equivalent"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "model.pt", tiny_model("baseline"), ByteTokenizer())
    save_checkpoint(tmp_path / "loop.pt", tiny_model("shared_loop"), ByteTokenizer())
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_export(tmp_path):
    exported(tmp_path)
    fmt, _ = export_checkpoint(tmp_path / "model.pt", "safetensors", tmp_path / "hf", overwrite=True)
    assert fmt == "safetensors" and not (tmp_path / "hf" / "config.json").exists()


def test_check_command_reports_no_difference(tmp_path, capsys):
    from looplab.interop.check import compare
    from looplab.interop.check import main as check_main

    exported(tmp_path)
    r = compare(str(tmp_path / "model.pt"), str(tmp_path / "hf"), prompts=("copy: ab =",), max_new_tokens=4)
    assert r["max_abs"] <= 1e-4 and r["same_ids"] and r["same_greedy"]
    assert check_main([str(tmp_path / "model.pt")]) == 2 and "usage" in capsys.readouterr().err
