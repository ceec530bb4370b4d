"""The selftest suite passes on a sound checkpoint and catches corruption and a broken solver."""

from __future__ import annotations

import dataclasses

import torch

from looplab.checkpoint import load_checkpoint, save_checkpoint
from looplab.data.tasks import TASKS
from looplab.eval.selftest import run_selftest
from tests.helpers import tiny_model


def test_sound_checkpoint_passes(tiny_ckpt):
    res = run_selftest(load_checkpoint(tiny_ckpt), path=str(tiny_ckpt), seed=0)
    assert res["all_pass"] and res["failed"] == 0, res


def test_file_replaced_after_loading(tiny_ckpt, byte_tok, tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(tiny_ckpt.read_bytes())
    ckpt = load_checkpoint(path)
    save_checkpoint(path, tiny_model("baseline"), byte_tok)  # a different model under the same name
    res = run_selftest(ckpt, path=str(path), seed=0)
    assert not res["checks"]["checkpoint_integrity"]["pass"] and "changed since it was loaded" in \
        res["checks"]["checkpoint_integrity"]["detail"]


def test_corrupted_file(tiny_ckpt, tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(tiny_ckpt.read_bytes())
    ckpt = load_checkpoint(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    check = run_selftest(ckpt, path=str(path), seed=0)["checks"]["checkpoint_integrity"]
    assert not check["pass"] and ("corrupt" in check["detail"] or "checksum" in check["detail"])


def test_weights_changed_in_memory(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    with torch.no_grad():
        next(ckpt.model.parameters()).add_(1e-3)
    check = run_selftest(ckpt, path="", seed=0)["checks"]["checkpoint_integrity"]
    assert not check["pass"] and "no longer match" in check["detail"]


def test_broken_solver(tiny_ckpt, monkeypatch):
    monkeypatch.setitem(TASKS, "parity", dataclasses.replace(TASKS["parity"], solve=lambda p: "0"))
    res = run_selftest(load_checkpoint(tiny_ckpt), path=str(tiny_ckpt), seed=0)
    assert not res["checks"]["solvers"]["pass"] and "parity@" in res["checks"]["solvers"]["detail"]
    assert res["failed"] == 1 and not res["all_pass"]


def test_broken_cache(tiny_ckpt, monkeypatch):
    """A decoding state that drifts from recomputation is caught."""
    ckpt = load_checkpoint(tiny_ckpt)
    original = ckpt.model.forward

    def drifting(idx, targets=None, state=None, n_loops=None):
        out = original(idx, targets, state, n_loops)
        if state is not None:  # only the cached path drifts: it now always says "A"
            out.logits[..., ord("A")] += 1e4
        return out

    monkeypatch.setattr(ckpt.model, "forward", drifting)
    res = run_selftest(ckpt, path=str(tiny_ckpt), seed=0)
    assert not res["checks"]["cached_equals_recomputation"]["pass"]
