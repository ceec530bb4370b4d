"""Checkpoints that load safely and cannot be half-written.

A checkpoint is one `torch.save` file holding only tensors and plain containers, so it loads with
`weights_only=True` (no arbitrary unpickling). It carries the resolved model config (JSON), the
tokenizer (its defining files as uint8 tensors), the weights, optional training state, and a
SHA-256 digest of the weights checked on load. Files are written to a temporary name, flushed,
fsynced and renamed, so a crash leaves the previous checkpoint intact. The pickle-free directory form
(`looplab export --to safetensors`) is read by `looplab.interop.load_exported`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.errors import LooplabError

FORMAT = "looplab-checkpoint-v1"


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(path: str | Path, model: nn.Module, tokenizer: Any, *,
                    train_state: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> None:
    weights = _model_state(model)
    payload = {
        "format": FORMAT,
        "model_config": json.dumps(model.cfg.to_dict()),
        "tokenizer": tokenizer.state_dict(),
        "model": weights,
        "digest": weights_digest(weights),
        "train_state": train_state or {},
        "meta": json.dumps(meta or {}),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: Any
    config: ModelConfig
    train_state: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    digest: str = ""


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, with every failure turned into one clear error."""
    path = Path(path)
    if not path.exists():
        raise LooplabError(f"checkpoint '{path}' does not exist")
    if path.is_dir():
        raise LooplabError(f"checkpoint '{path}' is a directory; give a .pt file such as {path}/best_model.pt")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LooplabError(f"checkpoint '{path}' is truncated, corrupt or not a looplab checkpoint ({first})") from None
    except Exception as e:  # weights_only refuses pickled objects with an UnpicklingError
        raise LooplabError(f"checkpoint '{path}' cannot be loaded safely: {type(e).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LooplabError(f"'{path}' is not a looplab checkpoint (expected format {FORMAT})")
    if weights_digest(payload["model"]) != payload["digest"]:
        raise LooplabError(f"checkpoint '{path}' failed its checksum: the weights were modified or damaged")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    from looplab.data.tokenizer import check_fits, tokenizer_from_state
    from looplab.models import build_model

    payload = read_payload(path, map_location)
    cfg = ModelConfig.from_dict(json.loads(payload["model_config"]))
    tokenizer = tokenizer_from_state(payload["tokenizer"])
    check_fits(tokenizer, cfg.vocab_size)
    model = build_model(cfg)
    model.load_state_dict(payload["model"])
    model.to(map_location).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, config=cfg, train_state=payload["train_state"],
                      meta=json.loads(payload["meta"]), digest=payload["digest"])
