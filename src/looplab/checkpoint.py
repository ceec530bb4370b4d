"""Checkpoints that load safely and cannot be half-written.

A checkpoint is one `torch.save` file holding only tensors and plain containers, so it loads with
`weights_only=True` (no arbitrary unpickling). It carries the resolved model config (JSON), the
tokenizer (its defining files as uint8 tensors), the weights, optional training state, a SHA-256
digest of the weights (the model's identity, also used by rlf and the selftest) and a SHA-256
checksum of everything else (optimiser state, generators, data position), both checked on load.

Files are written (looplab.io) to a temporary name, flushed, fsynced and renamed, so a crash or a full disk
leaves the previous file intact; with `keep_previous` the checkpoint being replaced is also kept as
`<name>.prev.pt`, which `--resume` falls back to when the newest one fails its checks. The
pickle-free directory form (`looplab export --to safetensors`) is read by `looplab.interop.load_exported`.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.data.tokenizer import check_fits, tokenizer_from_state
from looplab.errors import LooplabError
from looplab.io import (
    FORMAT,
    atomic_write_bytes,
    payload_checksum,
    previous_path,
    read_payload,
    weights_digest,
)
from looplab.models import build_model


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(path: str | Path, model: nn.Module, tokenizer: Any, *,
                    train_state: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                    weights: dict[str, torch.Tensor] | None = None, keep_previous: bool = False) -> None:
    """`weights` overrides the model's own state (a sharded model's gathered full state dict)."""
    weights = _model_state(model) if weights is None else weights
    payload = {
        "format": FORMAT,
        "model_config": json.dumps(model.cfg.to_dict()),
        "tokenizer": tokenizer.state_dict(),
        "model": weights,
        "digest": weights_digest(weights),
        "train_state": train_state or {},
        "meta": json.dumps(meta or {}),
    }
    payload["checksum"] = payload_checksum(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue(), keep_previous=keep_previous)


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: Any
    config: ModelConfig
    train_state: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    digest: str = ""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    payload = read_payload(path, map_location)
    cfg = ModelConfig.from_dict(json.loads(payload["model_config"]))
    tokenizer = tokenizer_from_state(payload["tokenizer"])
    check_fits(tokenizer, cfg.vocab_size)
    model = build_model(cfg)
    model.load_state_dict(payload["model"])
    model.to(map_location).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, config=cfg, train_state=payload["train_state"],
                      meta=json.loads(payload["meta"]), digest=payload["digest"])


def load_latest(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Checkpoint, Path]:
    """`path`, or, when it fails its checks, the previous checkpoint kept beside it (with a warning)."""
    try:
        return load_checkpoint(path, map_location), Path(path)
    except LooplabError as e:
        prev = previous_path(path)
        if not prev.exists():
            raise
        try:
            ckpt = load_checkpoint(prev, map_location)
        except LooplabError as e2:
            raise LooplabError(f"{e}; the previous checkpoint {prev.name} cannot be used either: {e2}") from None
        print(f"warning: {e}; using the previous checkpoint {prev}", file=sys.stderr)
        return ckpt, prev


def load_model(path: str, device: str = "cpu") -> tuple[nn.Module, Any]:
    """Model and tokenizer from any checkpoint the project writes."""
    ckpt = load_checkpoint(path, map_location=device)
    return ckpt.model, ckpt.tokenizer
