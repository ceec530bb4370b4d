"""looplab: does recursion, looping or latent compute help a language model?"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_model(path: str, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from any checkpoint the project writes."""
    from looplab.checkpoint import load_model as _load

    return _load(path, device)
