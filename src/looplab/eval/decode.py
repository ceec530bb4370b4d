"""Batched greedy decoding: the one place where caches are driven.

`greedy` feeds each batch's prompts once, then one token at a time through the model's decoding
state (KV cache or recurrent state). `greedy_reference` recomputes the whole sequence at every
step: slow and obviously correct, the reference the fast path is tested against.

Prompts are bucketed by length, so a batch needs no padding and positions stay exact. Generation
stops at EOS or after `max_new_tokens`, so it can never hang. `at_once` reads the answers of a
model trained with `answer_at_once` from blank slots in one forward.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import nn

from looplab.data.batch import Batch
from looplab.data.digit_ids import coupled_base, ids_of_rows


def _buckets(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    out = []
    for _, idxs in sorted(by_len.items()):
        out.extend(idxs[i : i + batch_size] for i in range(0, len(idxs), batch_size))
    return out


def rows_batch(model: nn.Module, idx: torch.Tensor, slot_id: int | None = None, last: int = 0) -> Batch:
    """Token rows (B, T) as a Batch with the position ids the model's `position_ids` asks for (computed
    from the rows, data.digit_ids); `last` > 0 keeps the final `last` columns only (a cached step)."""
    cfg = getattr(model, "cfg", None)
    kind = getattr(cfg, "position_ids", "plain")
    ids = None if kind == "plain" else ids_of_rows(idx, kind, slot_id, coupled_base(cfg.max_seq_len))
    if last:
        idx, ids = idx[:, -last:], None if ids is None else ids[:, -last:]
    return Batch(idx, position_ids=ids if kind == "coupled" else None, abacus_ids=ids if kind == "abacus" else None)


def _trim(row: list[int], eos_id: int) -> list[int]:
    return row[: row.index(eos_id) + 1] if eos_id in row else row


@torch.no_grad()
def greedy(model: nn.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_id: int,
           batch_size: int = 64, use_cache: bool = True, exact: bool = True) -> list[list[int]]:
    """Greedy continuation of every prompt, up to and including EOS when it is produced. The cache is
    exact unless `exact=False` asks for a variant's approximate one (a speed figure, never a score)."""
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    for idxs in _buckets(prompts, batch_size):
        idx = torch.tensor([list(prompts[i]) for i in idxs], dtype=torch.long, device=device)  # (B, T)
        state = model.new_state(len(idxs), idx.shape[1] + max_new_tokens, exact=exact) if use_cache else None
        gen = _decode_batch(model, idx, state, max_new_tokens, eos_id)
        for row, i in zip(gen.tolist(), idxs):
            out[i] = _trim(row, eos_id)
    return out


def _decode_batch(model: nn.Module, idx: torch.Tensor, state: object, max_new_tokens: int,
                  eos_id: int) -> torch.Tensor:
    B = idx.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=idx.device)
    gen = []
    seq, feed = idx, idx.shape[1]  # feed: the columns of seq the next cached forward reads
    for _ in range(max_new_tokens):
        if state is None:
            logits = model(rows_batch(model, seq)).logits[:, -1]  # (B, V)
        else:
            logits = model(rows_batch(model, seq, last=feed), state=state).logits[:, -1]
        nxt = logits.argmax(dim=-1)  # (B,)
        gen.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()):
            break
        feed = 1
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    return torch.stack(gen, dim=1)  # (B, N)


@torch.no_grad()
def at_once(model: nn.Module, prompts: Sequence[Sequence[int]], answer_lengths: Sequence[int], *, slot_id: int,
            eos_id: int, batch_size: int = 64) -> list[list[int]]:
    """Answers read at once (`answer_at_once` models): each prompt followed by n - 1 blank slots for an
    answer of n tokens (EOS included), one forward, and the most likely token at the prompt's last
    position and at every slot; trimmed after EOS as `greedy` trims. Prompts and slots are bucketed by
    total length, so no batch is padded."""
    device = next(model.parameters()).device
    rows = [[*p, *[slot_id] * (n - 1)] for p, n in zip(prompts, answer_lengths)]
    out: list[list[int]] = [[] for _ in prompts]
    for idxs in _buckets(rows, batch_size):
        idx = torch.tensor([rows[i] for i in idxs], dtype=torch.long, device=device)  # (B, T)
        best = model(rows_batch(model, idx, slot_id)).logits.argmax(dim=-1)  # (B, T)
        for b, i in enumerate(idxs):
            start = len(prompts[i]) - 1
            out[i] = _trim(best[b, start : start + answer_lengths[i]].tolist(), eos_id)
    return out


@torch.no_grad()
def greedy_reference(model: nn.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                     eos_id: int) -> list[list[int]]:
    """One prompt at a time, full recomputation every step: the slow reference."""
    device = next(model.parameters()).device
    out = []
    for p in prompts:
        seq = list(p)
        gen: list[int] = []
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([seq], dtype=torch.long, device=device)).logits[0, -1]
            tok = int(logits.argmax())
            gen.append(tok)
            seq.append(tok)
            if tok == eos_id:
                break
        out.append(gen)
    return out
