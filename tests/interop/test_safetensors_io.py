"""`looplab export --to safetensors`: every variant, its tokenizer and training state, read back without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from looplab.checkpoint import save_checkpoint
from looplab.data.tokenizer import ByteTokenizer, load_tokenizer
from looplab.errors import LooplabError
from looplab.interop import export_checkpoint, load_any, load_exported
from looplab.interop.safetensors_io import join_state, split_state
from tests.helpers import GENERIC, tiny_model

LLAMA2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "tokenizers" / "llama2_tokenizer.model"


def no_pickle(*args, **kwargs):
    raise AssertionError("the safetensors export must load without torch.load")


@pytest.mark.parametrize("variant", GENERIC)
def test_every_variant_round_trips_without_pickle(tmp_path, monkeypatch, variant):
    model = tiny_model(variant)
    save_checkpoint(tmp_path / "m.pt", model, ByteTokenizer(), meta={"step": 7})
    fmt, files = export_checkpoint(tmp_path / "m.pt", "safetensors", tmp_path / "st")
    assert fmt == "safetensors" and not any(f.endswith(".pt") for f in files)
    tied = json.loads((tmp_path / "st" / "looplab.json").read_text())["tied"]
    named = dict(model.named_parameters(remove_duplicate=False))
    assert len(tied) == len(named) - len(dict(model.named_parameters()))  # every shared parameter stored once
    assert all(named[name] is named[source] for name, source in tied.items())
    assert variant != "baseline" or tied == {"head.weight": "embed.weight"}
    monkeypatch.setattr(torch, "load", no_pickle)
    back = load_exported(tmp_path / "st")
    assert back.config == model.cfg and back.meta == {"step": 7} and back.tokenizer.kind == "bytes"
    for name, t in model.state_dict().items():
        assert torch.equal(back.model.state_dict()[name], t), name
    x = torch.randint(0, 256, (2, 11))
    with torch.no_grad():
        assert torch.equal(back.model(x).logits, model(x).logits)


def test_training_state_round_trips_and_resumes_the_optimizer(tmp_path):
    model = tiny_model("baseline")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8))).loss.backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 1, "stream": json.dumps({"pos": 3}), "best_acc": -1.0}
    save_checkpoint(tmp_path / "m.pt", model, ByteTokenizer(), train_state=state)
    export_checkpoint(tmp_path / "m.pt", "safetensors", tmp_path / "st")
    back = load_any(tmp_path / "st").train_state
    assert back["step"] == 1 and back["stream"] == state["stream"] and back["best_acc"] == -1.0
    moments = back["optimizer"]["state"]
    assert set(moments) == set(state["optimizer"]["state"])  # integer keys survive JSON
    for i, s in state["optimizer"]["state"].items():
        assert all(torch.equal(moments[i][k], v) for k, v in s.items())
    torch.optim.AdamW(tiny_model("baseline").parameters()).load_state_dict(back["optimizer"])


def test_split_and_join_are_inverse():
    tensors: dict[str, torch.Tensor] = {}
    obj = {"a": [1, 2.5, None, "x", torch.ones(2)], "b": {0: torch.zeros(3), 1: {"c": True}}}
    back = join_state(json.loads(json.dumps(split_state(obj, tensors))), tensors)
    assert back["a"][:4] == [1, 2.5, None, "x"] and torch.equal(back["a"][4], torch.ones(2))
    assert set(back["b"]) == {0, 1} and back["b"][1] == {"c": True}
    with pytest.raises(LooplabError, match="no JSON form"):
        split_state({"bad": object()}, {})


def test_damaged_weights_fail_the_checksum(tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny_model("baseline"), ByteTokenizer())
    export_checkpoint(tmp_path / "m.pt", "safetensors", tmp_path / "st")
    path = tmp_path / "st" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LooplabError, match="checksum"):
        load_exported(tmp_path / "st")
    with pytest.raises(LooplabError, match="not a looplab safetensors export"):
        load_exported(tmp_path)


@pytest.mark.skipif(not LLAMA2.is_file(), reason="needs ../shared/data/tokenizers/llama2_tokenizer.model")
def test_sentencepiece_checkpoint_exports_its_model_file(tmp_path):
    tok = load_tokenizer(str(LLAMA2))
    torch.manual_seed(0)
    from looplab.models import create_model

    model = create_model("baseline", "tiny", tok.vocab_size, n_layer=1)
    save_checkpoint(tmp_path / "m.pt", model, tok)
    for to in ("safetensors", "hf"):
        export_checkpoint(tmp_path / "m.pt", to, tmp_path / to)
        assert (tmp_path / to / "tokenizer.model").read_bytes() == LLAMA2.read_bytes()
    back = load_exported(tmp_path / "safetensors").tokenizer
    assert back.fingerprint == tok.fingerprint and back.encode("Hello world") == [15043, 3186]
