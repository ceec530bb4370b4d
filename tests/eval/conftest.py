"""The tiny checkpoint the evaluation tests read (the session's trained run), and the results schema."""

from __future__ import annotations

import json

import pytest

from looplab.eval.hub import SCHEMA_PATH


@pytest.fixture(scope="session")
def tiny_ckpt(trained_run):
    """The session's trained run's best checkpoint: a `tiny` baseline trained on parity and passkey."""
    return trained_run / "best_model.pt"


@pytest.fixture(scope="session")
def schema():
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="session")
def lang_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lang") / "valid.txt"
    path.write_text("Once upon a time there was a cat.\n\nThe cat sat on a mat. It was happy.\n\n"
                    "A dog ran in the park and found a ball.\n")
    return path
