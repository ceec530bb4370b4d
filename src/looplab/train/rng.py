"""Every random generator a run draws from, captured into and restored from a checkpoint.

Exact resume needs the global generators (Python `random`, NumPy's legacy global, torch on the CPU
and on every CUDA device) besides the data streams' own generators, which their `state_dict`s
carry. prc draws its sampled recurrence depth and initial state from torch's global generator, so
without this a resumed prc run would diverge at its first step. The states are stored as a JSON
string and uint8 tensors, so a checkpoint still loads with `weights_only=True`.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(words), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    state: dict[str, Any] = {"plain": json.dumps(plain), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    plain = json.loads(state["plain"])
    version, words, gauss = plain["python"]
    random.setstate((version, tuple(words), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
