"""Language data: documents from text, JSONL, Parquet or a hub dataset -> cached tokens -> batches.

`read_documents` turns a source into a list of document strings. `load_corpus` tokenises them once
(each document followed by EOS) into a memory-mapped token array cached under a key made of the
source's contents hash and the tokenizer's fingerprint. Documents are split into training and
validation by a hash of their text, so the split is deterministic, independent of the shuffling
seed, and a document repeated in the source can never sit on both sides. `LangStream` walks the
training documents in a seeded order per epoch and cuts the concatenation into (x, y) rows.

Letters: B rows per batch, T sequence length, D documents, M tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from looplab.data.batch import Batch
from looplab.errors import LooplabError

EOT = "<|endoftext|>"
EXTENSIONS = (".txt", ".jsonl", ".parquet")
HF_PREFIX = "hf:"
CACHE_VERSION = "lang-v1"


# --- reading documents ----------------------------------------------------------------------------
def read_documents(path: str, *, text_field: str = "text", allow_network: bool = False,
                   split: str = "train") -> list[str]:
    """Documents from `path`: a `.txt` file (documents separated by `<|endoftext|>` lines, or by
    blank lines when there are none), a `.jsonl` or `.parquet` file with a `text_field`, a
    directory of such files (sorted, recursive), or `hf:NAME` (the `datasets` library; needs
    `allow_network`). Empty documents are dropped; every failure is a one-line LooplabError."""
    if path.startswith(HF_PREFIX):
        return _read_hf(path[len(HF_PREFIX):], text_field=text_field, allow_network=allow_network, split=split)
    docs: list[str] = []
    for file in source_files(path):
        docs += _READERS[file.suffix](file, text_field)
    return docs


def source_files(path: str) -> list[Path]:
    """The files a local source stands for, in a fixed order."""
    p = Path(path)
    if not p.exists():
        raise LooplabError(f"language data '{path}' does not exist")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in EXTENSIONS)
        if not files:
            raise LooplabError(f"language data directory '{path}' holds no {', '.join(EXTENSIONS)} files")
        return files
    if p.suffix not in EXTENSIONS:
        raise LooplabError(f"language data '{path}' has unknown extension '{p.suffix}'; "
                           f"allowed: {', '.join(EXTENSIONS)}, a directory, or hf:NAME")
    return [p]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LooplabError(f"cannot read language data '{path}' ({type(e).__name__}: {str(e)[:80]})") from None


def _split_text(text: str) -> list[str]:
    lines = text.splitlines()
    if any(line.strip() == EOT for line in lines):
        docs, cur = [], []
        for line in lines:
            if line.strip() == EOT:
                docs.append("\n".join(cur))
                cur = []
            else:
                cur.append(line)
        docs.append("\n".join(cur))
    else:
        docs = text.replace("\r\n", "\n").split("\n\n")
    return [d.strip() for d in docs if d.strip()]


def _read_txt(path: Path, text_field: str) -> list[str]:
    return _split_text(_read_text(path))


def _read_jsonl(path: Path, text_field: str) -> list[str]:
    docs = []
    for i, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise LooplabError(f"{path}:{i}: invalid JSON ({e.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            raise LooplabError(f"{path}:{i}: record has no '{text_field}' field")
        if not isinstance(record[text_field], str):
            raise LooplabError(f"{path}:{i}: field '{text_field}' is {type(record[text_field]).__name__}, not text")
        if record[text_field].strip():
            docs.append(record[text_field].strip())
    return docs


def _read_parquet(path: Path, text_field: str) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    try:
        if pq is not None:
            table = pq.read_table(path)
            if text_field not in table.column_names:
                raise LooplabError(f"{path}: no column '{text_field}'; columns: {', '.join(table.column_names)}")
            values = table.column(text_field).to_pylist()
        else:
            try:
                import pandas as pd
            except ImportError:
                raise LooplabError(f"reading {path} needs pyarrow or pandas; install one of them") from None
            frame = pd.read_parquet(path)
            if text_field not in frame.columns:
                raise LooplabError(f"{path}: no column '{text_field}'; columns: {', '.join(map(str, frame.columns))}")
            values = frame[text_field].tolist()
    except LooplabError:
        raise
    except Exception as e:  # the engines raise their own types for corrupt files
        raise LooplabError(f"cannot read parquet file {path} ({type(e).__name__})") from None
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, str):
            raise LooplabError(f"{path}: row {i} of column '{text_field}' is {type(v).__name__}, not text")
    return [v.strip() for v in values if v and v.strip()]


_READERS = {".txt": _read_txt, ".jsonl": _read_jsonl, ".parquet": _read_parquet}


def _hf_rows(name: str, split: str) -> Any:
    """Rows of a hub dataset (an iterable of dicts). Tests replace this function."""
    try:
        import datasets
    except ImportError:
        raise LooplabError("hf: language data needs the 'datasets' package; pip install datasets") from None
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:  # network, missing dataset or split: all user-facing
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LooplabError(f"cannot load hub dataset '{name}' split '{split}' ({first[:120]})") from None


def _read_hf(name: str, *, text_field: str, allow_network: bool, split: str) -> list[str]:
    if not name:
        raise LooplabError("hf: language data needs a dataset name, e.g. hf:roneneldan/TinyStories")
    if not allow_network:
        raise LooplabError(f"language data 'hf:{name}' would be downloaded; pass --allow_network to allow it")
    docs = []
    for i, row in enumerate(_hf_rows(name, split)):
        if text_field not in row:
            raise LooplabError(f"hub dataset '{name}' row {i} has no '{text_field}' field")
        text = row[text_field]
        if isinstance(text, str) and text.strip():
            docs.append(text.strip())
    return docs


# --- tokens, cached -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Corpus:
    """A tokenised source: every document's tokens then EOS, back to back."""

    tokens: np.ndarray  # (M,) memory-mapped uint16 or uint32 ids
    offsets: np.ndarray  # (D + 1,) int64: document d is tokens[offsets[d] : offsets[d + 1]]
    buckets: np.ndarray  # (D,) float64 in [0, 1) from a hash of each document's text
    key: str  # cache key: contents hash + tokenizer fingerprint

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Document indices (train, validation). A document is held out when its text hash falls
        below `val_fraction`; at least one is held out whenever the fraction is positive."""
        val = self.buckets < val_fraction
        if val_fraction > 0 and not val.any() and self.n_docs > 1:
            val[int(np.argmin(self.buckets))] = True
        idx = np.arange(self.n_docs)
        return idx[~val], idx[val]


def source_hash(path: str, text_field: str, docs: list[str] | None = None) -> str:
    """SHA-256 of a source's bytes (each file's relative name and contents), or of its documents."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{text_field}|".encode())
    if docs is not None:
        for d in docs:
            h.update(d.encode())
            h.update(b"\x00")
        return h.hexdigest()
    root = Path(path)
    for f in source_files(path):
        h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode() + b"\x00")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _bucket(doc: str) -> float:
    return int.from_bytes(hashlib.sha256(doc.encode()).digest()[:8], "big") / 2.0**64


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def load_corpus(path: str, tokenizer: Any, cache_dir: str | Path, *, text_field: str = "text",
                allow_network: bool = False) -> Corpus:
    """Tokenise `path` once; later calls with the same contents and tokenizer map the cached arrays."""
    docs = None
    if path.startswith(HF_PREFIX):
        docs = read_documents(path, text_field=text_field, allow_network=allow_network)
    key = f"{source_hash(path, text_field, docs)[:24]}-{tokenizer.fingerprint[:16]}"
    cache = Path(cache_dir)
    files = {name: cache / f"{key}.{name}.npy" for name in ("tokens", "offsets", "buckets")}
    if not all(f.exists() for f in files.values()):
        if docs is None:
            docs = read_documents(path, text_field=text_field)
        if not docs:
            raise LooplabError(f"language data '{path}' holds no documents")
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LooplabError(f"token cache directory {cache} is not writable ({e.strerror})") from None
        ids = [np.asarray([*tokenizer.encode(d), tokenizer.eos_id], dtype=np.int64) for d in docs]
        dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
        _save_atomic(files["tokens"], np.concatenate(ids).astype(dtype))
        _save_atomic(files["offsets"], np.concatenate([[0], np.cumsum([len(a) for a in ids])]).astype(np.int64))
        _save_atomic(files["buckets"], np.array([_bucket(d) for d in docs], dtype=np.float64))
    tokens = np.load(files["tokens"], mmap_mode="r")
    return Corpus(tokens=tokens, offsets=np.load(files["offsets"]), buckets=np.load(files["buckets"]), key=key)


def token_array(path: str, tokenizer: Any, cache_dir: str | Path, **kw: Any) -> np.memmap:
    """The cached, memory-mapped token array of a source (documents then EOS, file order)."""
    return load_corpus(path, tokenizer, cache_dir, **kw).tokens


def default_cache_dir() -> Path:
    """Token caches live beside the hub caches unless LOOPLAB_CACHE says otherwise."""
    base = os.environ.get("LOOPLAB_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                            str(Path.home() / ".cache"), "looplab")
    return Path(base).expanduser() / "tokens"


# --- batches --------------------------------------------------------------------------------------
class LangStream:
    """Endless (x, y) batches over a set of documents, reshuffled by (seed, epoch) every epoch.

    The documents of an epoch are laid end to end and cut into rows of T + 1 tokens with stride T,
    so every token is a target exactly once per epoch. State: (epoch, token position in it)."""

    def __init__(self, corpus: Corpus, docs: np.ndarray, *, seq_len: int, batch_size: int, seed: int,
                 shuffle: bool = True) -> None:
        self.corpus, self.docs = corpus, np.asarray(docs, dtype=np.int64)
        self.seq_len, self.batch_size, self.seed, self.shuffle = seq_len, batch_size, seed, shuffle
        sizes = np.diff(corpus.offsets)[self.docs]
        self.epoch_tokens = int(sizes.sum())
        if self.epoch_tokens < seq_len + 1:
            raise LooplabError(f"language data has {self.epoch_tokens} tokens in this split, fewer than "
                               f"one row of seq_len {seq_len} + 1")
        self.epoch, self.pos = 0, 0
        self._orders: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Documents of an epoch in reading order and their start positions (D_split + 1,)."""
        if epoch not in self._orders:
            docs = np.random.default_rng([self.seed, epoch]).permutation(self.docs) if self.shuffle else self.docs
            starts = np.concatenate([[0], np.cumsum(np.diff(self.corpus.offsets)[docs])])
            self._orders = {epoch: (docs, starts), **{e: o for e, o in self._orders.items() if e == epoch - 1}}
        return self._orders[epoch]

    def _read(self, epoch: int, pos: int, n: int) -> np.ndarray:
        """n tokens from (epoch, pos) on, running into the next epochs as needed."""
        out = []
        while n > 0:
            if pos >= self.epoch_tokens:
                epoch, pos = epoch + 1, pos - self.epoch_tokens
                continue
            docs, starts = self.order(epoch)
            d = int(np.searchsorted(starts, pos, side="right")) - 1
            while n > 0 and d < len(docs):
                a = self.corpus.offsets[docs[d]] + pos - starts[d]
                take = min(n, int(starts[d + 1] - pos))
                out.append(np.asarray(self.corpus.tokens[a : a + take], dtype=np.int64))
                pos, n, d = pos + take, n - take, d + 1
        return np.concatenate(out)

    def next_batch(self) -> Batch:
        """Tokens (B, T) and targets (B, T) int64, the next token everywhere; no per-row facts."""
        B, T = self.batch_size, self.seq_len
        flat = self._read(self.epoch, self.pos, B * T + 1)
        rows = np.lib.stride_tricks.sliding_window_view(flat, T + 1)[::T]  # (B, T + 1)
        self.pos += B * T
        self.epoch, self.pos = self.epoch + self.pos // self.epoch_tokens, self.pos % self.epoch_tokens
        return Batch(torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(rows[:, 1:].copy()))

    def state_dict(self) -> dict[str, Any]:
        return {"key": self.corpus.key, "seed": self.seed, "epoch": self.epoch, "pos": self.pos,
                "seq_len": self.seq_len, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {k: v for k, v in self.state_dict().items() if k not in ("epoch", "pos")}
        theirs = {k: state.get(k) for k in mine}
        if mine != theirs:
            raise LooplabError(f"language stream state was saved with {theirs}, which differs from {mine}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


def validation_batches(corpus: Corpus, docs: np.ndarray, *, seq_len: int, batch_size: int,
                       max_batches: int) -> list[Batch]:
    """A fixed set of held-out batches (documents in source order, no shuffling), at most one pass."""
    stream = LangStream(corpus, docs, seq_len=seq_len, batch_size=batch_size, seed=0, shuffle=False)
    n = max(1, min(max_batches, (stream.epoch_tokens - 1) // stream.tokens_per_batch))
    return [stream.next_batch() for _ in range(n)]
