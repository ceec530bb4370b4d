"""The longctx suite: needle in a haystack (passkey retrieval, Mohtashami & Jaggi, arXiv 2305.16300).

A five-digit key sits at a chosen depth (0 = first thing after the tag, 1 = just before `=`) of
repeated filler text sized to about L tokens, and the model must answer with the key. The prompts
come from the `passkey` task's own generator (`looplab.data.tasks.passkey_examples`), so a model
trained on short `passkey` examples sees the very same format here at 1k-4k tokens.

Each (length, depth) cell draws its prompts from a generator seeded by (seed, length, depth), so
every model answers the same questions. A cell's prompts differ only from the needle on, so with a
KV cache and a needle past mid-prompt the common prefix is prefilled once and its cache copied to
every prompt of the cell (`greedy_shared_prefix`, tested equal to plain `greedy`); otherwise it is
plain `greedy`. Then each prompt decodes a handful of tokens.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from looplab.data.packing import encode_example
from looplab.data.tasks import PASSKEY_DIGITS, PASSKEY_FILLER, passkey_examples
from looplab.errors import LooplabError
from looplab.eval.algorithmic import cell_rng
from looplab.eval.decode import _decode_batch, _trim, greedy
from looplab.models.layers import KVCache

GRID_VERSION = "longctx-v1"
TOKEN_BUDGET = 8192  # prompt tokens per decoded batch: small batches are fastest on the CPU at 4k


def filler_units(tokenizer: Any, length: int) -> int:
    """Filler units that bring a passkey context (bos, prompt, sep) to about `length` tokens."""
    rng = np.random.default_rng(0)
    bare = passkey_examples(rng, 1, 0).texts()[0]
    overhead = len(encode_example(tokenizer, *bare)[0])
    unit = len(tokenizer.encode(PASSKEY_FILLER))
    return max(1, round((length - overhead) / unit))


def needle_pairs(tokenizer: Any, length: int, depth: float, trials: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, key) pairs of one cell; the needle sits before filler unit round(depth * units)."""
    rng = cell_rng(seed, f"needle@{depth:g}", length)
    return passkey_examples(rng, trials, filler_units(tokenizer, length), depth).texts()


@torch.no_grad()
def greedy_shared_prefix(model: nn.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_id: int,
                         batch_size: int = 64, use_cache: bool = True) -> list[list[int]]:
    """`greedy` for prompts that share a long prefix: the prefix is prefilled once (batch 1) and
    its KV cache copied to each batch of suffixes. Same tokens as `greedy`, a fraction of the work."""
    n = len(os.path.commonprefix([list(p) for p in prompts])) if len(prompts) > 1 else 0
    n = min(n, min(len(p) for p in prompts) - 1)  # every prompt keeps at least one token to feed
    probe = model.new_state(1, 1) if use_cache else None
    # Suffixes attend through an explicit mask, about twice the cost of the causal kernel on the
    # CPU: sharing pays only when the prefix is at least half the prompt.
    plain = getattr(model.cfg, "position_ids", "plain") == "plain"  # data ids are computed over whole prompts
    if 2 * n < max(len(p) for p in prompts) or not isinstance(probe, KVCache) or not plain:
        return greedy(model, prompts, max_new_tokens=max_new_tokens, eos_id=eos_id, batch_size=batch_size,
                      use_cache=use_cache)
    device = next(model.parameters()).device
    longest = max(len(p) for p in prompts)
    shared = model.new_state(1, longest + max_new_tokens)
    model(torch.tensor([list(prompts[0][:n])], dtype=torch.long, device=device), state=shared)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    out: list[list[int]] = [[] for _ in prompts]
    for idxs in by_len.values():
        for k in range(0, len(idxs), batch_size):
            batch = idxs[k : k + batch_size]
            B = len(batch)
            state = KVCache(shared.k.expand(-1, B, -1, -1, -1).clone(),  # (N, B, G, S, D)
                            shared.v.expand(-1, B, -1, -1, -1).clone(), pos=shared.pos)
            rest = torch.tensor([list(prompts[i][n:]) for i in batch], dtype=torch.long, device=device)
            gen = _decode_batch(model, rest, state, max_new_tokens, eos_id)
            for row, i in zip(gen.tolist(), batch):
                out[i] = _trim(row, eos_id)
    return out


def run_longctx(model: nn.Module, tokenizer: Any, *, lengths: Sequence[int], depths: Sequence[float],
                trials: int, seed: int, batch_size: int = 64, use_cache: bool = True) -> dict[str, Any]:
    """Accuracy per (length, depth) cell, per length and per depth; lengths a model cannot
    address (learned absolute positions) are listed under `skipped` with the reason."""
    cells: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for length in lengths:
        batch = max(1, min(batch_size, TOKEN_BUDGET // length))
        row = {}
        try:
            for depth in depths:
                pairs = needle_pairs(tokenizer, length, depth, trials, seed)
                contexts, answers = zip(*(encode_example(tokenizer, p, t) for p, t in pairs))
                outs = greedy_shared_prefix(model, contexts, max_new_tokens=PASSKEY_DIGITS + 1,
                                            eos_id=tokenizer.eos_id, batch_size=batch, use_cache=use_cache)
                correct = [list(o) == list(a) for o, a in zip(outs, answers)]
                tokens = [len(c) for c in contexts]
                row[f"{depth:g}"] = {"acc": float(np.mean(correct)), "n": len(correct),
                                     "prompt_tokens": int(np.mean(tokens))}
        except LooplabError as e:
            skipped[str(length)] = str(e)
            continue
        cells[str(length)] = row
    by_length = {n: float(np.mean([c["acc"] for c in row.values()])) for n, row in cells.items()}
    by_depth = {f"{d:g}": float(np.mean([row[f"{d:g}"]["acc"] for row in cells.values()]))
                for d in depths} if cells else {}
    return {
        "cells": cells,
        "by_length": by_length,
        "by_depth": by_depth,
        "acc": float(np.mean(list(by_length.values()))) if by_length else None,
        "trials_per_cell": trials,
        "skipped": skipped,
    }
