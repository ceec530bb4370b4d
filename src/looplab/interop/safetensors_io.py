"""The looplab checkpoint as a directory of safetensors and JSON, loadable without any unpickling.

Layout (every file written atomically):

    looplab.json             format tag, resolved model config, tokenizer roles, meta, weights digest,
                             and the tied names (an output head sharing the embedding is stored once)
    model.safetensors        the weights under looplab's own parameter names
    tokenizer.model / .json  the tokenizer's defining file (none for the byte tokenizer)
    train_state.safetensors  tensors of the training state (optimiser moments...), when there is one
    train_state.json         the rest of the training state, with tensors replaced by their keys

Any variant exports this way; `load_exported` rebuilds a `Checkpoint` equal to the one saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from looplab.checkpoint import Checkpoint
from looplab.config import ModelConfig
from looplab.errors import LooplabError
from looplab.io import atomic_write_bytes, weights_digest, write_json

FORMAT = "looplab-safetensors-v1"
MARKER = "looplab.json"
TOKENIZER_FILES = {"bytes": None, "sentencepiece": "tokenizer.model", "hf": "tokenizer.json"}
FILES = (MARKER, "model.safetensors", "tokenizer.model", "tokenizer.json", "train_state.safetensors",
         "train_state.json")


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise LooplabError("safetensors export needs the safetensors package: pip install safetensors") from None
    return safetensors.torch


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    # safetensors refuses views into shared storage: give every tensor its own contiguous copy
    own = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, _safetensors().save(own, metadata={"format": "pt"}))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return _safetensors().load_file(str(path))
    except Exception as e:  # a damaged header surfaces as several exception types
        raise LooplabError(f"'{path}' is not a readable safetensors file ({type(e).__name__})") from None


# --- nested training state <-> (JSON skeleton, flat tensors) --------------------------------------
def split_state(obj: Any, tensors: dict[str, torch.Tensor], key: str = "") -> Any:
    """JSON skeleton of `obj`; each tensor moves into `tensors` and leaves {"__tensor__": key}.

    A dict with a non-string key (the optimiser's parameter indices) becomes {"__items__": [[k, v]...]}
    so that its keys come back with their types.
    """
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_state(v, tensors, f"{key}/{k}") for k, v in obj.items()}
        return {"__items__": [[k, split_state(v, tensors, f"{key}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_state(v, tensors, f"{key}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise LooplabError(f"training state holds a {type(obj).__name__} at '{key}', which has no JSON form")


def join_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `split_state` (tuples come back as lists)."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            if obj["__tensor__"] not in tensors:
                raise LooplabError(f"train_state.safetensors lacks the tensor '{obj['__tensor__']}'")
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: join_state(v, tensors) for k, v in obj["__items__"]}
        return {k: join_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_state(v, tensors) for v in obj]
    return obj


# --- export and load ------------------------------------------------------------------------------
def write_tokenizer_file(tokenizer: Any, out: Path) -> str | None:
    """The tokenizer's defining file in `out`; its name, or None for the byte tokenizer."""
    name = TOKENIZER_FILES.get(tokenizer.kind)
    if name is not None:
        data = tokenizer.state_dict()["data"]
        atomic_write_bytes(out / name, data.cpu().numpy().tobytes())
    return name


def export_safetensors(ckpt: Checkpoint, out: Path) -> list[str]:
    """Write `ckpt` in the layout above; returns the file names written."""
    weights = {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()}
    tied = tied_names(weights)
    write_tensors(out / "model.safetensors", {k: v for k, v in weights.items() if k not in tied})
    tok = ckpt.tokenizer
    tok_file = write_tokenizer_file(tok, out)
    written = ["model.safetensors", *([tok_file] if tok_file else [])]
    if ckpt.train_state:
        tensors: dict[str, torch.Tensor] = {}
        skeleton = split_state(ckpt.train_state, tensors)
        write_tensors(out / "train_state.safetensors", tensors)
        write_json(out / "train_state.json", skeleton)
        written += ["train_state.safetensors", "train_state.json"]
    write_json(out / MARKER, {
        "format": FORMAT,
        "model_config": ckpt.config.to_dict(),
        "tokenizer": {"kind": tok.kind, "name": tok.name, "file": tok_file, "specials": tok.specials,
                      "vocab_size": tok.vocab_size, "fingerprint": tok.fingerprint},
        "meta": ckpt.meta,
        "digest": weights_digest(weights),
        "tied": tied,
    })
    return [MARKER, *written]


def tied_names(weights: dict[str, torch.Tensor]) -> dict[str, str]:
    """Names whose tensor is another name's (a tied output head): stored once, restored on load."""
    first: dict[tuple, str] = {}
    tied = {}
    for name, t in weights.items():
        start = t.untyped_storage().data_ptr() + t.storage_offset() * t.element_size()
        key = (start, tuple(t.shape), t.stride())
        if key in first and t.numel():
            tied[name] = first[key]
        first.setdefault(key, name)
    return tied


def is_exported(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LooplabError(f"'{path}' is missing or not valid JSON ({type(e).__name__})") from None


def _tokenizer(doc: dict[str, Any], folder: Path) -> Any:
    from looplab.data.tokenizer import tokenizer_from_state

    info = doc.get("tokenizer") or {}
    if info.get("kind") == "bytes":
        return tokenizer_from_state({"kind": "bytes"})
    path = folder / str(info.get("file"))
    if not path.is_file():
        raise LooplabError(f"exported checkpoint '{folder}' lacks its tokenizer file {info.get('file')}")
    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    return tokenizer_from_state({**info, "data": data})


def load_exported(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """The `Checkpoint` in a directory written by `export_safetensors`, digest checked."""
    from looplab.data.tokenizer import check_fits
    from looplab.models import build_model

    folder = Path(path)
    if not is_exported(folder):
        raise LooplabError(f"'{folder}' is not a looplab safetensors export (it has no {MARKER})")
    doc = _read_json(folder / MARKER)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LooplabError(f"'{folder / MARKER}' is not a looplab export (expected format {FORMAT})")
    weights = read_tensors(folder / "model.safetensors")
    for name, source in (doc.get("tied") or {}).items():
        if source not in weights:
            raise LooplabError(f"'{folder}/model.safetensors' lacks '{source}', which '{name}' is tied to")
        weights[name] = weights[source]
    if weights_digest(weights) != doc.get("digest"):
        raise LooplabError(f"'{folder}/model.safetensors' failed its checksum: the weights were modified or damaged")
    cfg = ModelConfig.from_dict(doc["model_config"])
    tokenizer = _tokenizer(doc, folder)
    check_fits(tokenizer, cfg.vocab_size)
    model = build_model(cfg)
    model.load_state_dict(weights)  # copies, so a tied pair stays one parameter
    model.to(map_location).eval()
    train_state: dict[str, Any] = {}
    if (folder / "train_state.json").is_file():
        tensors = read_tensors(folder / "train_state.safetensors")
        train_state = join_state(_read_json(folder / "train_state.json"), tensors)
    return Checkpoint(model=model, tokenizer=tokenizer, config=cfg, train_state=train_state,
                      meta=doc.get("meta") or {}, digest=doc["digest"])
