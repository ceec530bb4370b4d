"""A tiny checkpoint the evaluation tests train and save themselves, and the results schema."""

from __future__ import annotations

import json

import pytest
import torch

from looplab.checkpoint import save_checkpoint
from looplab.data.packing import AlgoStream
from looplab.data.tokenizer import ByteTokenizer
from looplab.eval.hub import SCHEMA_PATH
from tests.helpers import tiny_model

TASKS = ["parity", "passkey"]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A `tiny` baseline after a few optimiser steps on parity and passkey, saved as a checkpoint."""
    torch.set_num_threads(1)
    tok = ByteTokenizer()
    model = tiny_model("baseline")
    stream = AlgoStream(tok, TASKS, seq_len=192, batch_size=4, seed=0, loss_on="answer")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(3):
        batch = stream.next_batch()
        x, y = batch.tokens, batch.targets
        model(x, y).loss.backward()
        opt.step()
        opt.zero_grad()
    path = tmp_path_factory.mktemp("ckpt") / "best_model.pt"
    save_checkpoint(path, model.eval(), tok, meta={"tasks": TASKS, "tokens": 3 * 4 * 192})
    return path


@pytest.fixture(scope="session")
def schema():
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="session")
def lang_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lang") / "valid.txt"
    path.write_text("Once upon a time there was a cat.\n\nThe cat sat on a mat. It was happy.\n\n"
                    "A dog ran in the park and found a ball.\n")
    return path
