"""The frozen base of rlf: a looplab checkpoint or a Hugging Face causal LM directory, one interface.

A base offers `encode(idx) -> (B, T, C)` (the final hidden state its head reads: the input of a
looplab model's final norm, a transformers model's `last_hidden_state`), `head` (its output
projection), `layers` (its stack, for `adapt_top_layers`), `width` and `vocab` (the head's rows).

`read_base(path)` reads what an rlf config records about a base: its kind and architecture (a
JSON-safe dict, so a checkpoint rebuilds the base without the file), a digest of its weights, and
the tokenizer it comes with. Nothing here touches the network: transformers loads local files only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.errors import LooplabError

HF_WEIGHTS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class BaseInfo:
    config: dict[str, Any]  # {"kind": "looplab" | "hf", "config": architecture}
    digest: str  # sha256 of the weights
    tokenizer: Any  # the tokenizer stored with the base, or None (a directory without one)


def _hf_files(path: Path) -> list[Path]:
    return sorted(f for pattern in HF_WEIGHTS for f in path.glob(pattern))


def _hf_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in _hf_files(path):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def read_base(path: str) -> BaseInfo:
    """Kind, architecture, digest and tokenizer of the base at `path`; any problem is one line."""
    p = Path(path)
    if not path or not p.exists():
        raise LooplabError(f"rlf base '{path}' does not exist; give a looplab checkpoint (.pt) or a "
                           "Hugging Face model directory")
    if p.is_file():
        import json

        from looplab.data.tokenizer import tokenizer_from_state
        from looplab.io import read_payload

        payload = read_payload(p)
        cfg = json.loads(payload["model_config"])
        if cfg.get("variant") == "rlf":
            raise LooplabError(f"rlf base '{path}' is itself an rlf checkpoint; give the model it was built on")
        return BaseInfo({"kind": "looplab", "config": cfg}, payload["digest"],
                        tokenizer_from_state(payload["tokenizer"]))
    if not (p / "config.json").exists() or not _hf_files(p):
        raise LooplabError(f"rlf base '{path}' is a directory without config.json and weights "
                           "(*.safetensors or *.bin); give a Hugging Face model directory or a .pt checkpoint")
    import transformers

    config = transformers.AutoConfig.from_pretrained(p, local_files_only=True).to_dict()
    tokenizer = None
    if any((p / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        from looplab.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(str(p))
    return BaseInfo({"kind": "hf", "config": config}, _hf_digest(p), tokenizer)


class LooplabBase(nn.Module):
    """A looplab model; its hidden state is captured at the input of its final norm."""

    kind = "looplab"

    def __init__(self, cfg: Mapping[str, Any], build: Callable[[ModelConfig], nn.Module]) -> None:
        super().__init__()
        self.model = build(ModelConfig.from_dict(cfg))
        if not isinstance(getattr(self.model, "norm", None), nn.Module) or not hasattr(self.model, "head"):
            raise LooplabError(f"rlf cannot use a '{cfg.get('variant')}' base: it has no final norm and head")
        self._hidden: torch.Tensor | None = None
        self.model.norm.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._hidden = args[0]

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        self.model(idx)
        hidden, self._hidden = self._hidden, None
        return hidden

    @property
    def head(self) -> nn.Module:
        return self.model.head

    @property
    def final_norm(self) -> nn.Module | None:
        """The norm the base's head reads through (encode returns its input)."""
        return self.model.norm

    @property
    def layers(self) -> nn.ModuleList:
        return _stack(self.model)

    @property
    def width(self) -> int:
        return self.model.cfg.d_model

    @property
    def vocab(self) -> int:
        return self.model.head.weight.shape[0]


class HFBase(nn.Module):
    """A transformers causal LM (GPT-2, Mamba-2, ...), built from its config dict."""

    kind = "hf"

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        import transformers

        cfg = dict(cfg)
        config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        self.model = transformers.AutoModelForCausalLM.from_config(config)

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.base_model(input_ids=idx).last_hidden_state

    @property
    def head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    @property
    def final_norm(self) -> nn.Module | None:
        """None: last_hidden_state is already past the model's final norm."""
        return None

    @property
    def layers(self) -> nn.ModuleList:
        return _stack(self.model)

    @property
    def width(self) -> int:
        return self.head.weight.shape[1]

    @property
    def vocab(self) -> int:
        return self.head.weight.shape[0]


def _stack(model: nn.Module) -> nn.ModuleList:
    """The longest ModuleList in the model: its stack of layers."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise LooplabError(f"rlf base {type(model).__name__} has no stack of layers")
    return max(lists, key=len)


def make_base(config: Mapping[str, Any], build: Callable[[ModelConfig], nn.Module]) -> nn.Module:
    """The base module; `build` is the model registry's builder (passed in: the registry imports rlf)."""
    kinds = ("looplab", "hf")
    if config.get("kind") not in kinds:
        raise LooplabError(f"rlf base_config kind must be one of {', '.join(kinds)}, got {config.get('kind')!r}")
    return LooplabBase(config["config"], build) if config["kind"] == "looplab" else HFBase(config["config"])


def load_base_if_unchanged(base: nn.Module, path: str, digest: str) -> bool:
    """Load the base's weights from `path` when it still holds the weights recorded as `digest`
    (one read of a looplab checkpoint); False, and nothing loaded, when it is gone or changed."""
    p = Path(path)
    if not p.exists():
        return False
    if p.is_file():
        from looplab.io import read_payload

        try:
            payload = read_payload(p)
        except LooplabError:
            return False
        if payload["digest"] != digest:
            return False
        base.model.load_state_dict(payload["model"])
        return True
    if _hf_digest(p) != digest:
        return False
    import transformers

    base.model.load_state_dict(transformers.AutoModelForCausalLM.from_pretrained(p, local_files_only=True)
                               .state_dict())
    return True


def prepare_base(path: str, tokenizer_name: str | None) -> tuple[Any, dict[str, Any]]:
    """For `train.py --variant rlf --base PATH`: the base's tokenizer and the rlf options that record
    the base. A --tokenizer that differs from the base's is refused."""
    from looplab.data.tokenizer import load_tokenizer

    info = read_base(path)
    given = load_tokenizer(tokenizer_name) if tokenizer_name else None
    tok = info.tokenizer or given or load_tokenizer(None)
    if given is not None and given.fingerprint != tok.fingerprint:
        raise LooplabError(f"rlf base '{path}' comes with tokenizer {tok.name}, but --tokenizer gives {given.name}; "
                           "drop --tokenizer or give the base's")
    vocab = _head_rows(info.config)
    needed = max(max(tok.encode(c)) for c in "abcdefghijklmnopqrstuvwxyz0123456789=;? ")
    if vocab is not None and needed >= vocab:
        raise LooplabError(f"rlf base '{path}' has {vocab} output rows but tokenizer {tok.name} uses id {needed}; "
                           "the base was trained with a different tokenizer")
    opts = {"base": str(Path(path).resolve()), "base_config": info.config, "base_sha256": info.digest,
            "pad_id": tok.pad_id}
    return tok, opts


def _head_rows(config: Mapping[str, Any]) -> int | None:
    inner = config["config"]
    return inner.get("vocab_size")
