"""Interoperability: checkpoints as Hugging Face Llama models or as pickle-free safetensors directories.

`export_checkpoint(path, to, out_dir)` is what `looplab export` runs; `load_exported(dir)` reads a
safetensors export back into a `Checkpoint`, and `load_any` takes either form.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from looplab.checkpoint import Checkpoint, load_checkpoint
from looplab.errors import LooplabError
from looplab.interop.hf_export import HF_VARIANTS, export_hf
from looplab.interop.hf_tokenizer import FILES as TOKENIZER_FILES
from looplab.interop.safetensors_io import FILES as SAFETENSORS_FILES
from looplab.interop.safetensors_io import export_safetensors, is_exported, load_exported

FORMATS: dict[str, Callable[[Checkpoint, Path], list[str]]] = {
    "hf": export_hf,  # config.json + model.safetensors + tokenizer files, for transformers
    "safetensors": export_safetensors,  # looplab.json + safetensors, any variant, with training state
}
_OWN_FILES = {*SAFETENSORS_FILES, *TOKENIZER_FILES, "config.json", "generation_config.json"}


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create `out`; refuse one that holds files unless overwrite, and then clear only files we write."""
    if out.exists() and not out.is_dir():
        raise LooplabError(f"OUT_DIR '{out}' is a file; give a directory")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and not overwrite:
        raise LooplabError(f"OUT_DIR '{out}' already holds files ({', '.join(present[:3])}"
                           f"{', ...' if len(present) > 3 else ''}); pass --overwrite or choose another directory")
    for name in present:
        if name in _OWN_FILES and (out / name).is_file():
            (out / name).unlink()  # no stale file of an earlier export may mix with this one
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LooplabError(f"cannot create OUT_DIR '{out}' ({e.strerror})") from None


def load_any(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """A `Checkpoint` from a .pt file or from a safetensors export directory."""
    return load_exported(path, map_location) if is_exported(path) else load_checkpoint(path, map_location)


def export_checkpoint(checkpoint: str | Path, to: str, out_dir: str | Path, *, overwrite: bool = False,
                      strict: bool = False) -> tuple[str, list[str]]:
    """Export `checkpoint` (a .pt file or a safetensors export) in format `to`.

    A variant with no transformers equivalent asked for `hf` falls back to `safetensors` unless
    `strict`. Returns the format written and the file names.
    """
    if to not in FORMATS:
        raise LooplabError(f"unknown export format '{to}'; allowed: {', '.join(FORMATS)}")
    ckpt = load_any(checkpoint)
    if to == "hf" and ckpt.config.variant not in HF_VARIANTS and not strict:
        to = "safetensors"
    if to == "hf" and ckpt.config.variant not in HF_VARIANTS:
        raise LooplabError(f"variant '{ckpt.config.variant}' has no transformers equivalent; --to hf allows "
                           f"{', '.join(HF_VARIANTS)} (drop --strict to write the safetensors format instead)")
    out = Path(out_dir)
    prepare_out_dir(out, overwrite)
    return to, FORMATS[to](ckpt, out)


__all__ = ["FORMATS", "HF_VARIANTS", "export_checkpoint", "is_exported", "load_any", "load_exported"]
