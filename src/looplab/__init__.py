"""looplab: does recursion, looping or latent compute help a language model?"""

from __future__ import annotations

from typing import Any

from looplab.meta import VERSION as __version__  # noqa: F401 (the package version)


def load_model(path: str, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from any checkpoint the project writes."""
    from looplab.checkpoint import load_model as _load

    return _load(path, device)
