"""The bottom layer: atomic writes, JSON files, digests and reading checkpoint payloads.

Files are written to a temporary name, flushed, fsynced and renamed, so a crash or a full disk
leaves the previous file intact. A checkpoint payload is one `torch.save` dict holding only tensors
and plain containers, read with `weights_only=True` (no arbitrary unpickling), with the SHA-256
digest of its weights (the model's identity) and the checksum of everything else checked on read.
Building a model from a payload is `looplab.checkpoint`'s job (it needs the model registry).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

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


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> None:
    """`data` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=sort_keys) + "\n").encode())


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
