"""Tokenizer files that `transformers.AutoTokenizer` loads, for each kind of looplab tokenizer.

bytes: a `tokenizers` BPE with no merges over the 256 byte-level symbols, so id b is byte b, and
the four specials as added tokens with ids 256..259 (pad, bos, eos, sep). Caveat: transformers
matches added tokens in raw text, so a text that literally contains "</s>" encodes to the eos id
there but to four bytes in looplab. Everything else encodes and decodes identically.

hf: the tokenizer.json itself, plus the specials looplab appended after its vocabulary.
sentencepiece: the .model file, with a Llama tokenizer config that adds no bos/eos on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.interop.safetensors_io import write_tokenizer_file
from looplab.io import atomic_write_bytes, write_json

# Names for the roles in exported files; the ids, not the names, are what looplab relies on.
ROLE_TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "sep": "<sep>"}
FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


def byte_symbols() -> list[str]:
    """The printable character standing for each byte in byte-level tokenizers (index = byte).

    Printable Latin-1 bytes stand for themselves; the others (controls, space, 0x7f-0xa0, 0xad) take
    the code points from 256 upwards in byte order, so no symbol is whitespace or a control.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    keep = set(printable)
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def byte_tokenizer_json(tokenizer: Any) -> str:
    """A tokenizer.json equivalent to looplab's ByteTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {s: b for b, s in enumerate(byte_symbols())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    _add_specials(backend, tokenizer, base=256)
    return backend.to_str()


def _add_specials(backend: Any, tokenizer: Any, base: int) -> None:
    """Append the roles looplab placed at ids >= base, in id order, and check they land there."""
    from tokenizers import AddedToken

    extra = sorted((i, role) for role, i in tokenizer.specials.items() if i >= base)
    for i, role in extra:
        backend.add_special_tokens([AddedToken(ROLE_TOKENS[role], special=True, normalized=False)])
        if backend.token_to_id(ROLE_TOKENS[role]) != i:
            raise LooplabError(f"cannot export tokenizer {tokenizer.name}: its {role} token would get id "
                               f"{backend.token_to_id(ROLE_TOKENS[role])} instead of {i}")


def _role_names(tokenizer: Any, id_to_token: Any) -> dict[str, str]:
    return {role: id_to_token(i) or ROLE_TOKENS[role] for role, i in tokenizer.specials.items()}


def write_hf_tokenizer(tokenizer: Any, out: Path, *, max_len: int) -> list[str]:
    """Write the tokenizer files of `tokenizer` into `out`; returns their names."""
    from tokenizers import Tokenizer

    config: dict[str, Any] = {"model_max_length": max_len, "clean_up_tokenization_spaces": False}
    if tokenizer.kind == "sentencepiece":
        written = [write_tokenizer_file(tokenizer, out)]
        base = tokenizer.base_size
        names = {role: tokenizer._sp.id_to_piece(i) if i < base else ROLE_TOKENS[role]
                 for role, i in tokenizer.specials.items()}
        config |= {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False,
                   "legacy": True,
                   "added_tokens_decoder": {str(i): {"content": names[r], "special": True, "normalized": False,
                                                     "lstrip": False, "rstrip": False, "single_word": False}
                                            for r, i in tokenizer.specials.items() if i >= base}}
    else:
        if tokenizer.kind == "bytes":
            text = byte_tokenizer_json(tokenizer)
        elif tokenizer.kind == "hf":
            backend = Tokenizer.from_str(tokenizer.state_dict()["data"].numpy().tobytes().decode("utf-8"))
            _add_specials(backend, tokenizer, base=tokenizer.base_size)
            text = backend.to_str()
        else:
            raise LooplabError(f"tokenizer kind '{tokenizer.kind}' has no Hugging Face export; "
                               "allowed: bytes, sentencepiece, hf")
        atomic_write_bytes(out / "tokenizer.json", text.encode("utf-8"))
        names = _role_names(tokenizer, Tokenizer.from_str(text).id_to_token)
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        written = ["tokenizer.json"]
    roles = {f"{role}_token": name for role, name in names.items()}
    write_json(out / "tokenizer_config.json", {**config, **roles})
    write_json(out / "special_tokens_map.json", roles)
    return [*written, "tokenizer_config.json", "special_tokens_map.json"]
