"""Shared fixtures: small models and the default tokenizer; paths to the shared data when present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _threads() -> None:
    """Tiny tensors: one thread, since OpenMP hand-offs dominate (and stall on a busy CPU)."""
    torch.set_num_threads(1)


@pytest.fixture
def byte_tok():
    from looplab.data.tokenizer import ByteTokenizer

    return ByteTokenizer()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
