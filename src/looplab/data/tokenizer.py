"""Tokenizers: raw bytes, SentencePiece `.model` files, and Hugging Face `tokenizer.json` / directories.

Every tokenizer exposes the same four special ids (bos, eos, pad, sep), all distinct. A role the
underlying tokenizer lacks, or shares with a role assigned before it, gets a new id after the base
vocabulary, so `vocab_size` counts the rows the model's embedding needs. A tokenizer's
`state_dict()` embeds its defining file as a uint8 tensor, so a checkpoint carries its tokenizer and
`tokenizer_from_state` rebuilds it without the original file; `fingerprint` identifies it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from looplab.errors import LooplabError

ROLES = ("bos", "eos", "pad", "sep")
# Which role keeps a shared id: eos first, since decoding stops on it and losses must see it.
_KEEP_ORDER = ("eos", "bos", "pad", "sep")
# Order in which missing roles get new ids: pad = base, sep = base + 1, then bos, eos.
_ADD_ORDER = ("pad", "sep", "bos", "eos")
# Token strings recognised in a bare tokenizer.json, which names no roles itself.
_CANDIDATES = {
    "bos": ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "[BOS]"),
    "eos": ("</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", "[EOS]"),
    "pad": ("<pad>", "[PAD]", "<|pad|>", "<|padding|>"),
    "sep": ("<sep>", "[SEP]", "<|sep|>"),
}
# Files a Hugging Face repository needs for its tokenizer; fetching only these avoids the weights.
_HUB_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "*.model",
              "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json", "config.json"]
_FORMS = "bytes, a SentencePiece .model file, a tokenizer.json, a tokenizer directory, or a hub name org/name"
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def assign_specials(base: int, found: dict[str, int | None]) -> tuple[dict[str, int], int]:
    """Distinct ids for every role, and the vocab size that holds them.

    `found` maps roles to the ids the tokenizer defines (None or missing when it has none).
    """
    ids: dict[str, int] = {}
    for role in _KEEP_ORDER:
        i = found.get(role)
        if i is not None and 0 <= i < base and i not in ids.values():
            ids[role] = i
    size = base
    for role in _ADD_ORDER:
        if role not in ids:
            ids[role] = size
            size += 1
    return {role: ids[role] for role in ROLES}, size


class Tokenizer(ABC):
    """The interface every tokenizer offers; `encode` adds no specials, `decode` drops them."""

    name: str  # human-readable origin, e.g. "sentencepiece:llama2_tokenizer.model"
    vocab_size: int  # embedding rows needed, including the specials this wrapper added
    bos_id: int
    eos_id: int
    pad_id: int
    sep_id: int
    is_byte_level: bool = False
    kind: str  # the tag stored in state_dict()

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def _defining_bytes(self) -> bytes:
        """The content of the file that defines the base tokenizer (empty for bytes)."""

    @property
    def specials(self) -> dict[str, int]:
        return {"bos": self.bos_id, "eos": self.eos_id, "pad": self.pad_id, "sep": self.sep_id}

    @cached_property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.kind.encode() + b"\0")
        h.update(self._defining_bytes())
        h.update(b"\0" + json.dumps({**self.specials, "vocab_size": self.vocab_size}, sort_keys=True).encode())
        return h.hexdigest()

    def _set_specials(self, specials: dict[str, int], vocab_size: int) -> None:
        self.bos_id, self.eos_id = specials["bos"], specials["eos"]
        self.pad_id, self.sep_id = specials["pad"], specials["sep"]
        self.vocab_size = vocab_size

    def _plain_ids(self, ids: Sequence[int]) -> list[int]:
        special = set(self.specials.values())
        return [int(i) for i in ids if int(i) not in special]

    def _file_state(self, data: bytes) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "data": _to_tensor(data),
                "specials": dict(self.specials), "vocab_size": self.vocab_size}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0..255, then pad, bos, eos, sep."""

    kind = "bytes"
    is_byte_level = True

    def __init__(self) -> None:
        self.name = "bytes"
        self._set_specials({"pad": 256, "bos": 257, "eos": 258, "sep": 259}, 260)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(self._plain_ids(ids)).decode("utf-8", errors="replace")

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def _defining_bytes(self) -> bytes:
        return b""


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model; its bos/eos/pad are kept, the missing roles are added after its pieces."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, *, name: str) -> None:
        import sentencepiece as spm

        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except Exception as e:
            raise LooplabError(f"tokenizer {name} is not a valid SentencePiece model ({_first_line(e)})") from None
        self.name = name
        self._proto = bytes(model_proto)
        self.base_size = self._sp.get_piece_size()
        found = {"bos": self._sp.bos_id(), "eos": self._sp.eos_id(), "pad": self._sp.pad_id()}
        self._set_specials(*assign_specials(self.base_size, {r: i for r, i in found.items() if i >= 0}))

    @classmethod
    def from_file(cls, path: Path) -> SentencePieceTokenizer:
        return cls(path.read_bytes(), name=f"sentencepiece:{path.name}")

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([i for i in self._plain_ids(ids) if i < self.base_size])

    def state_dict(self) -> dict[str, Any]:
        return self._file_state(self._proto)

    def _defining_bytes(self) -> bytes:
        return self._proto


class HFTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer, defined by its tokenizer.json text.

    Role ids come, in rising precedence, from the usual strings of the tokenizer's special added
    tokens (a bare tokenizer.json names no roles), from `tokens` (role -> token string, as a
    directory's tokenizer_config.json names them) and from `found` (role -> id).
    """

    kind = "hf"

    def __init__(self, json_text: str, *, name: str, tokens: dict[str, str] | None = None,
                 found: dict[str, int | None] | None = None) -> None:
        from tokenizers import Tokenizer as Backend

        try:
            self._tok = Backend.from_str(json_text)
        except Exception as e:
            raise LooplabError(f"tokenizer {name} is not a valid tokenizer.json ({_first_line(e)})") from None
        self.name = name
        self._json = json_text
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.base_size = max(vocab.values(), default=-1) + 1
        named = {r: self._tok.token_to_id(t) for r, t in (tokens or {}).items()}
        known = _guess_roles(self._tok)
        for source in (named, found or {}):  # an unknown token or a None id leaves the guess in place
            known.update({r: i for r, i in source.items() if isinstance(i, int)})
        self._set_specials(*assign_specials(self.base_size, known))

    @classmethod
    def from_file(cls, path: Path, *, name: str | None = None) -> HFTokenizer:
        return cls(_read_text(path), name=name or f"tokenizer.json:{path}")

    @classmethod
    def from_dir(cls, path: Path, *, name: str | None = None) -> HFTokenizer:
        """A directory's tokenizer.json with the roles its config files name, else a transformers conversion."""
        name = name or f"hf:{path}"
        if (path / "tokenizer.json").is_file():
            return cls(_read_text(path / "tokenizer.json"), name=name, tokens=_configured_tokens(path))
        return cls.from_transformers(path, name=name)

    @classmethod
    def from_transformers(cls, path: Path, *, name: str) -> HFTokenizer:
        """Convert whatever AutoTokenizer reads in `path` (vocab.txt, vocab.json + merges.txt...) offline."""
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise LooplabError(f"tokenizer directory '{path}' has no tokenizer.json and converting it needs "
                               "the transformers package; install it, or give a .model file or tokenizer.json") from None
        try:
            auto = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            json_text = auto.backend_tokenizer.to_str()
        except Exception as e:
            raise LooplabError(f"tokenizer directory '{path}' has no tokenizer.json and transformers cannot load "
                               f"it as a fast tokenizer ({_first_line(e)}); give {_FORMS}") from None
        found = {r: getattr(auto, f"{r}_token_id", None) for r in ROLES}
        return cls(json_text, name=name, found=found)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([i for i in self._plain_ids(ids) if i < self.base_size], skip_special_tokens=False)

    def state_dict(self) -> dict[str, Any]:
        return self._file_state(self._json.encode("utf-8"))

    def _defining_bytes(self) -> bytes:
        return self._json.encode("utf-8")


def _guess_roles(tok: Any) -> dict[str, int]:
    """Role ids from the special added tokens of a tokenizer.json, by their conventional strings."""
    special = {a.content: i for i, a in tok.get_added_tokens_decoder().items() if a.special}
    found = {}
    for role, names in _CANDIDATES.items():
        hit = next((special[n] for n in names if n in special), None)
        if hit is not None:
            found[role] = hit
    return found


def _configured_tokens(path: Path) -> dict[str, str]:
    """Role token strings named by tokenizer_config.json, else special_tokens_map.json."""
    tokens: dict[str, str] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):  # later files win
        f = path / fname
        if not f.is_file():
            continue
        try:
            cfg = json.loads(_read_text(f))
        except json.JSONDecodeError as e:
            raise LooplabError(f"'{f}' is not valid JSON ({e})") from None
        for role in ROLES:
            value = cfg.get(f"{role}_token") if isinstance(cfg, dict) else None
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                tokens[role] = value
    return tokens


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LooplabError(f"cannot read tokenizer file '{path}' ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _to_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (not at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _from_dir(path: Path, *, name: str) -> Tokenizer:
    """tokenizer.json first; a lone SentencePiece tokenizer.model is read directly rather than converted,
    so the result does not depend on which optional packages (transformers, protobuf) are installed."""
    if not (path / "tokenizer.json").is_file() and (path / "tokenizer.model").is_file():
        return SentencePieceTokenizer((path / "tokenizer.model").read_bytes(), name=name)
    return HFTokenizer.from_dir(path, name=name)


def _from_hub(repo_id: str, allow_network: bool) -> HFTokenizer:
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    not_cached = LooplabError(f"tokenizer '{repo_id}' is not in the local Hugging Face cache; pass --allow_network "
                              "to download it, or give a local tokenizer.json, .model file or directory")
    try:
        folder = snapshot_download(repo_id, cache_dir=cache, allow_patterns=_HUB_FILES, local_files_only=True)
        return _from_dir(Path(folder), name=f"hf:{repo_id}")
    except (OSError, ValueError, LooplabError):
        if not allow_network:
            raise not_cached from None
    try:
        folder = snapshot_download(repo_id, cache_dir=cache, allow_patterns=_HUB_FILES)
    except Exception as e:
        raise LooplabError(f"cannot download tokenizer '{repo_id}' from the Hugging Face Hub "
                           f"({_first_line(e)})") from None
    return _from_dir(Path(folder), name=f"hf:{repo_id}")


def load_tokenizer(spec: str | None, *, allow_network: bool = False) -> Tokenizer:
    """The tokenizer named by `spec`; see `_FORMS`. Hub names resolve offline unless allow_network."""
    if spec is None or spec == "bytes":
        return ByteTokenizer()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_dir(path, name=f"hf:{path}")
    if path.is_file():
        if path.suffix == ".model":
            return SentencePieceTokenizer.from_file(path)
        if path.suffix == ".json":
            return HFTokenizer.from_file(path)
        raise LooplabError(f"tokenizer file '{spec}' is neither a SentencePiece .model nor a tokenizer.json; "
                           f"give {_FORMS}")
    if _HUB_NAME.fullmatch(spec) and not spec.endswith((".model", ".json")):
        return _from_hub(spec, allow_network)
    raise LooplabError(f"tokenizer '{spec}' does not exist; give {_FORMS}")


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild the tokenizer a `state_dict()` describes, from the bytes it carries."""
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "bytes":
        return ByteTokenizer()
    if kind not in ("sentencepiece", "hf"):
        raise LooplabError(f"tokenizer state has kind {kind!r}; expected one of 'bytes', 'sentencepiece', 'hf'")
    data, name = state.get("data"), state.get("name")
    if not (isinstance(data, torch.Tensor) and data.dtype == torch.uint8 and data.dim() == 1) or not isinstance(name, str):
        raise LooplabError(f"tokenizer state of kind '{kind}' is corrupt: it needs 'name' (str) and 'data' "
                           "(a 1-D uint8 tensor)")
    raw = data.cpu().numpy().tobytes()
    if kind == "sentencepiece":
        tok: Tokenizer = SentencePieceTokenizer(raw, name=name)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LooplabError(f"tokenizer state for {name} is corrupt: its tokenizer.json is not UTF-8") from None
        specials = state.get("specials")
        tok = HFTokenizer(text, name=name, found=specials if isinstance(specials, dict) else None)
    if tok.specials != state.get("specials") or tok.vocab_size != state.get("vocab_size"):
        raise LooplabError(f"tokenizer state for {name} is corrupt: it records specials {state.get('specials')} and "
                           f"vocab_size {state.get('vocab_size')}, but its file gives {tok.specials} and "
                           f"{tok.vocab_size}")
    return tok


def check_fits(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Refuse a model whose embedding rows differ from the tokenizer's vocabulary."""
    if tokenizer.vocab_size != vocab_size:
        raise LooplabError(f"tokenizer {tokenizer.name} needs vocab_size {tokenizer.vocab_size} "
                           f"but the model has {vocab_size}")
