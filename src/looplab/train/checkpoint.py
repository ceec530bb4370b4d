"""Checkpoints that load safely and cannot be half-written.

A checkpoint is one `torch.save` file holding only tensors and plain containers, so it loads with
`weights_only=True` (no arbitrary unpickling). It carries the resolved model config (JSON), the
tokenizer (its defining files as uint8 tensors), the weights, optional training state, a SHA-256
digest of the weights (the model's identity, also used by rlf and the selftest) and a SHA-256
checksum of everything else (optimiser state, generators, data position), both checked on load.

Files are written to a temporary name, flushed, fsynced and renamed, so a crash or a full disk
leaves the previous file intact; with `keep_previous` the checkpoint being replaced is also kept as
`<name>.prev.pt`, which `--resume` falls back to when the newest one fails its checks. The
pickle-free directory form (`looplab export --to safetensors`) is read by `looplab.interop.load_exported`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.errors import LooplabError

FORMAT = "looplab-checkpoint-v1"


TMP_MARK = ".tmp-"  # temporary files are ".<name>.tmp-<pid>"; remove_stale_temporaries() clears them


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        _hash_tensor(h, state[name])
    return h.hexdigest()


def _hash_tree(h: Any, obj: Any) -> None:
    """Feed a tree of dicts, lists, tensors and scalars to `h`, with type tags so shapes cannot collide."""
    if isinstance(obj, torch.Tensor):
        h.update(b"T")
        _hash_tensor(h, obj)
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _hash_tree(h, obj[k])
    elif isinstance(obj, list | tuple):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _hash_tree(h, v)
    else:
        h.update(f"S{type(obj).__name__}:{obj!r}".encode())


def payload_checksum(payload: dict[str, Any]) -> str:
    """SHA-256 of every field but the two digests (the weights are covered by `digest`)."""
    h = hashlib.sha256()
    _hash_tree(h, {k: v for k, v in payload.items() if k not in ("model", "checksum")})
    return h.hexdigest()


def previous_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write_bytes(path: str | Path, data: bytes, *, keep_previous: bool = False) -> None:
    """Write `data` to `path` so that `path` always holds either the old or the new bytes.

    With `keep_previous`, the file being replaced stays readable as `previous_path(path)` (a hard
    link, so no copy, where the filesystem has them). A failed write (disk full, no permission) is a LooplabError naming the file
    and saying the previous one is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            prev, prev_tmp = previous_path(path), path.with_name(f".{previous_path(path).name}{TMP_MARK}{os.getpid()}")
            try:
                os.link(path, prev_tmp)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(path, prev_tmp)
            os.replace(prev_tmp, prev)
        os.replace(tmp, path)
    except OSError as e:
        kept = f"; the previous {path.name} is unchanged" if path.exists() else ""
        raise LooplabError(f"could not write {path} ({e.strerror or type(e).__name__}){kept}") from None
    finally:
        for t in path.parent.glob(f".*{TMP_MARK}{os.getpid()}"):
            t.unlink(missing_ok=True)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete half-written files a killed process left in `directory`; return what was removed."""
    stale = [p for p in Path(directory).glob(f".*{TMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise LooplabError(f"checkpoint '{path}' is truncated, corrupt or not a looplab checkpoint ({first})") from None
    except Exception as e:  # weights_only refuses pickled objects with an UnpicklingError
        raise LooplabError(f"checkpoint '{path}' cannot be loaded safely: {type(e).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LooplabError(f"'{path}' is not a looplab checkpoint (expected format {FORMAT})")
    if weights_digest(payload["model"]) != payload["digest"]:
        raise LooplabError(f"checkpoint '{path}' failed its checksum: the weights were modified or damaged")
    if "checksum" in payload and payload_checksum(payload) != payload["checksum"]:  # absent in files before v1.1
        raise LooplabError(f"checkpoint '{path}' failed its checksum: its training state or metadata was modified "
                           "or damaged")
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
