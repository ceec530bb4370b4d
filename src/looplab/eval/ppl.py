"""The ppl suite: perplexity and bits per byte on validation text.

Documents (read by `looplab.data.lang.read_documents`) become one stream `[bos] doc [bos] doc ...`,
taken whole until the token cap (the first document is cut to the cap if it alone exceeds it).
The stream is scored in non-overlapping windows of the training sequence length recorded in the
checkpoint, each window's last token the next window's first input, so every document token is
predicted exactly once, at a position the model was trained on; predictions of `bos` (document
boundaries) are not scored. When the model's context (max_seq_len) is longer, the same stream is
also scored in windows of that length and reported apart as `long_window`: most of its tokens sit
at positions no training step reached, so it measures length extrapolation, not perplexity. Perplexity is exp(mean NLL per scored token); bits per
byte is the summed NLL in bits over the UTF-8 bytes of the scored text, which compares models with
different tokenizers.

Letters: B windows per batch, T window length, V vocabulary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from looplab.data.batch import IGNORE
from looplab.errors import LooplabError

GRID_VERSION = "ppl-v2"  # v2: windows of the training seq_len (v1: max_seq_len)
REPO = Path(__file__).resolve().parents[3]
DEFAULT_LANG_DATA = REPO.parent / "shared" / "data" / "tinystories" / "valid_sample.txt"


def resolve_lang_data(path: str) -> str:
    """The given path, else the shared TinyStories validation sample when it is present."""
    if path:
        return path
    if DEFAULT_LANG_DATA.exists():
        return str(DEFAULT_LANG_DATA)
    raise LooplabError(f"no validation text: the default {DEFAULT_LANG_DATA} is absent; "
                       "pass --lang_data FILE (.txt, .jsonl, .parquet or a directory of them)")


def token_stream(tokenizer: Any, docs: list[str], cap: int) -> tuple[list[int], int]:
    """`[bos] doc [bos] doc ...` of whole documents up to `cap` scored tokens, and their UTF-8 bytes."""
    stream: list[int] = []
    scored = n_bytes = 0
    for doc in docs:
        ids = tokenizer.encode(doc)
        if stream and scored + len(ids) > cap:
            break
        if len(ids) > cap:  # the first document alone exceeds the cap: score its first `cap` tokens
            ids = ids[:cap]
            doc = tokenizer.decode(ids)
        stream += [tokenizer.bos_id, *ids]
        scored += len(ids)
        n_bytes += len(doc.encode("utf-8"))
    return stream, n_bytes


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    return nll_nats / math.log(2) / n_bytes


@torch.no_grad()
def stream_nll(model: nn.Module, stream: list[int], *, window: int, ignore_id: int,
               batch_size: int = 8) -> tuple[float, int]:
    """Summed next-token NLL (nats) over the stream, and how many tokens were scored."""
    device = next(model.parameters()).device
    ids = torch.tensor(stream, dtype=torch.long, device=device)
    starts = list(range(0, len(stream) - 1, window))
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        chunk = [ids[s : s + window + 1] for s in starts[i : i + batch_size]]
        width = max(len(c) for c in chunk)
        rows = torch.full((len(chunk), width), ignore_id, dtype=torch.long, device=device)  # (B, T + 1)
        y = torch.full_like(rows, IGNORE)
        for r, c in enumerate(chunk):
            rows[r, : len(c)] = c
            y[r, : len(c)] = c
        x, y = rows[:, :-1], y[:, 1:]  # (B, T)
        y = y.masked_fill(y == ignore_id, IGNORE)
        logits = model(x).logits.float()  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")
        total += float(nll)
        count += int((y != IGNORE).sum())
    return total, count


def score(model: nn.Module, tokenizer: Any, stream: list[int], n_bytes: int, window: int,
          batch_size: int) -> dict[str, Any]:
    nll, count = stream_nll(model, stream, window=window, ignore_id=tokenizer.bos_id, batch_size=batch_size)
    return {"window": window, "nll_per_token": nll / count, "ppl": math.exp(nll / count),
            "bits_per_byte": bits_per_byte(nll, n_bytes)}


def run_ppl(model: nn.Module, tokenizer: Any, *, path: str, max_tokens: int, window: int | None = None,
            batch_size: int = 8) -> dict[str, Any]:
    """Perplexity in windows of `window` (the training seq_len; None: the model's max_seq_len), and
    in windows of max_seq_len apart as `long_window` when that is longer."""
    from looplab.data.lang import read_documents

    docs = read_documents(path)
    if not docs:
        raise LooplabError(f"language data '{path}' holds no documents")
    stream, n_bytes = token_stream(tokenizer, docs, max_tokens)
    context = model.cfg.max_seq_len
    window = min(window or context, context)
    out = {"data": str(path), "documents": stream.count(tokenizer.bos_id),
           "tokens": len(stream) - stream.count(tokenizer.bos_id), "bytes": n_bytes,
           **score(model, tokenizer, stream, n_bytes, window, batch_size)}
    if context > window:
        out["long_window"] = score(model, tokenizer, stream, n_bytes, context, batch_size)
    return out
