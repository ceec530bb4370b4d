"""Shared fixtures: small models and the default tokenizer; paths to the shared data when present; one
tiny trained run per session."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _threads() -> None:
    """Tiny tensors: one thread, since OpenMP hand-offs dominate (and stall on a busy CPU)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Iterator[Path]:
    """A tiny baseline trained once per session (tests.helpers.TRAINED_ARGS): the run directory with every
    artefact a finished run writes. Tests that only need *a* trained run read it and never write into
    it (copy it first); tests that assert on training itself train their own."""
    from tests.helpers import train_tiny_run

    torch.set_num_threads(1)
    run = train_tiny_run(tmp_path_factory.mktemp("trained") / "run")
    before = digests(run)
    yield run
    assert digests(run) == before, "a test changed the shared trained run"


def digests(directory: Path) -> dict[str, str]:
    """Every path under `directory` with its file's SHA-256 (a directory's: empty)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            for p in sorted(directory.rglob("*"))}


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
