"""Checkpoints: exact round trip, safe loading, corruption and tampering detected."""

from __future__ import annotations

import pytest
import torch

from looplab import load_model
from looplab.checkpoint import load_checkpoint, save_checkpoint
from looplab.errors import LooplabError
from looplab.io import read_payload
from looplab.models import create_model


@pytest.fixture
def saved(tmp_path, byte_tok):
    torch.manual_seed(0)
    model = create_model("baseline", "tiny", byte_tok.vocab_size, n_kv_head=2)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, byte_tok, meta={"tokens": 123})
    return path, model


def test_round_trip(saved, byte_tok):
    path, model = saved
    loaded, tok = load_model(str(path))
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(loaded(x).logits, model.eval()(x).logits, rtol=0, atol=0)
    assert tok.fingerprint == byte_tok.fingerprint and loaded.cfg == model.cfg
    assert load_checkpoint(path).meta["tokens"] == 123


def test_no_temp_files_left(saved):
    path, _ = saved
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]


def test_loads_with_weights_only(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format"].startswith("looplab-checkpoint")


def test_truncated(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(LooplabError, match="truncated, corrupt"):
        read_payload(path)


def test_tampered_weights_fail_checksum(saved, tmp_path):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["model"]["embed.weight"][0, 0] += 1.0
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(LooplabError, match="checksum"):
        read_payload(bad)


class Evil:
    """An arbitrary object: unpickling it would run code of the file's choosing."""


def test_pickled_objects_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "looplab-checkpoint-v1", "x": Evil()}, path)
    with pytest.raises(LooplabError, match="cannot be loaded safely|corrupt"):
        read_payload(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(LooplabError, match="does not exist"):
        read_payload(tmp_path / "none.pt")
    with pytest.raises(LooplabError, match="is a directory"):
        read_payload(tmp_path)
