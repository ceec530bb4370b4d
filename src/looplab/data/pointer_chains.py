"""Pointer-chasing chains for Recursive Latent Forcing (rlf): seeded, vectorised, split by hash.

A prompt binds single-letter names to a letter or a digit, in random order, then asks for one name:

    "q=d; d=7; x=q; k=3; m=x; ? m"      4 hops: m -> x -> q -> d -> 7, distractor k=3

The queried name starts a chain of `hops` bindings that ends in a digit; the other bindings are
distractors (their right-hand sides may name chain letters, which changes nothing: every name is
bound once). The per-loop targets are the chain itself: loop 1 predicts the first pointer, loop 2
the next, ..., loop `hops` the digit, and loop `hops + 1` predicts HALT.

Splits. A prompt belongs to the evaluation split when a fixed hash of its bytes falls in one
sixteenth of the range (`is_eval`); the training stream drops those prompts and the evaluation sets
keep only them, so the two are disjoint by construction whatever the seeds (which also differ).

Letters: n examples, m bindings per prompt, h hops, P prompt bytes, L loops (h + 1).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from looplab.data.batch import Batch
from looplab.errors import LooplabError

NAMES = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
IGNORE = -100
TRAIN_HOPS = (1, 5)  # inclusive range of hops in training
IID_HOPS = (1, 2, 3, 4, 5)
OOD_HOPS = (6, 8, 10, 12)
MIN_BINDINGS = 8  # bindings per prompt up to 5 hops; longer chains get hops + 3
EVAL_SHARE = 16  # one prompt in EVAL_SHARE (by hash) belongs to the evaluation split
EVAL_SEED = 7919  # evaluation sets are drawn from seeds far from any training seed
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def n_bindings(hops: int) -> int:
    """Bindings per prompt: a fixed 8 for training-range hops (so every training prompt has the same
    length), hops + 3 beyond it (the 26 letters allow up to 23 hops)."""
    return max(MIN_BINDINGS, hops + 3)


@dataclass(frozen=True, kw_only=True)
class Chains:
    prompt: np.ndarray  # (n, P) uint8 ASCII, all the same length for one hop count
    steps: np.ndarray  # (n, h) uint8: the pointer after each hop; the last one is the digit

    @property
    def hops(self) -> int:
        return self.steps.shape[1]

    def texts(self) -> list[tuple[str, str]]:
        """(prompt, steps) strings, e.g. ("a=b; b=7; ? a", "b7")."""
        return [(p.tobytes().decode("ascii"), s.tobytes().decode("ascii")) for p, s in zip(self.prompt, self.steps)]


def generate(rng: np.random.Generator, n: int, hops: int) -> Chains:
    """n chains of `hops` hops, each hidden among distractors, bindings in random order."""
    m = n_bindings(hops)
    if not 1 <= hops or m > len(NAMES):
        raise LooplabError(f"hops must be in 1..{len(NAMES) - 3}, got {hops}")
    names = NAMES[np.argsort(rng.random((n, len(NAMES))), axis=1)[:, :m]]  # (n, m) distinct letters per row
    digit = DIGITS[rng.integers(0, 10, size=n)]  # (n,)
    lhs = names  # name j is bound once; names 0..hops-1 form the chain
    rhs = np.empty_like(names)
    rhs[:, : hops - 1] = names[:, 1:hops]
    rhs[:, hops - 1] = digit
    k = m - hops  # distractors: a digit or any other bound name
    pick = rng.integers(0, m - 1, size=(n, k))
    pick += pick >= np.arange(hops, m)  # skip the distractor's own name
    rhs[:, hops:] = np.where(rng.random((n, k)) < 0.5, DIGITS[rng.integers(0, 10, size=(n, k))],
                             np.take_along_axis(names, pick, axis=1))
    order = np.argsort(rng.random((n, m)), axis=1)  # shuffle the bindings of each row
    lhs, rhs = np.take_along_axis(lhs, order, axis=1), np.take_along_axis(rhs, order, axis=1)
    binding = np.stack([lhs, np.full_like(lhs, ord("=")), rhs, np.full_like(lhs, ord(";")),
                        np.full_like(lhs, ord(" "))], axis=2).reshape(n, 5 * m)  # "a=b; " per binding
    tail = np.stack([np.full(n, ord("?"), np.uint8), np.full(n, ord(" "), np.uint8), names[:, 0]], axis=1)
    steps = np.concatenate([names[:, 1:hops], digit[:, None]], axis=1)  # (n, h)
    return Chains(prompt=np.concatenate([binding, tail], axis=1), steps=steps)


def solve(prompt: str) -> str:
    """The independent reference: follow the queried name through the bindings to a digit."""
    body, query = prompt.split("? ")
    table = dict(b.split("=") for b in body.strip().rstrip(";").split("; "))
    out, name = [], query.strip()
    while not name.isdigit():
        name = table[name]
        out.append(name)
    return "".join(out)


def digit_guess_chance(ch: Chains) -> float:
    """Accuracy of the shortcut that names a digit bound in the prompt at random: the floor an
    answer-only accuracy must beat before it says anything about following the chain."""
    m = (ch.prompt.shape[1] - 3) // 5
    rhs = ch.prompt[:, 2 : 5 * m : 5]  # (n, m) right-hand sides
    present = (rhs[:, :, None] == DIGITS[None, None, :]).any(1)  # (n, 10)
    return float((1.0 / present.sum(1)).mean())


def prompt_hash(prompt: np.ndarray) -> np.ndarray:
    """A fixed 64-bit multiplicative hash of each byte row (wrapping uint64 arithmetic)."""
    h = np.zeros(len(prompt), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in prompt.T.astype(np.uint64):
            h = (h ^ col) * _HASH_MUL
    return h


def is_eval(prompt: np.ndarray) -> np.ndarray:
    return (prompt_hash(prompt) >> np.uint64(40)) % np.uint64(EVAL_SHARE) == 0


def draw(rng: np.random.Generator, n: int, hops: int, split: str) -> Chains:
    """n chains from one split ("train" or "eval"), drawing more until enough survive the filter."""
    parts, have = [], 0
    while have < n:
        ch = generate(rng, n if split == "train" else 20 * n, hops)
        keep = is_eval(ch.prompt) == (split == "eval")
        parts.append(Chains(prompt=ch.prompt[keep], steps=ch.steps[keep]))
        have += int(keep.sum())
    return Chains(prompt=np.concatenate([p.prompt for p in parts])[:n],
                  steps=np.concatenate([p.steps for p in parts])[:n])


def eval_set(hops: int, n: int, seed: int = 0) -> Chains:
    """The fixed evaluation chains for one hop count (evaluation split, its own seed)."""
    return draw(np.random.default_rng([EVAL_SEED, seed, hops, zlib.crc32(b"rlf-eval")]), n, hops, "eval")


# --- tokens ------------------------------------------------------------------------------------------
class ChainCodec:
    """Chains -> model inputs (B, T) and per-loop targets (B, L) for one tokenizer.

    Byte-level tokenizers take the numpy fast path; others encode each prompt and right-pad with
    `pad_id` (the rlf model reads its prediction at the last non-pad position). `specials` wraps
    prompts as [bos] prompt [sep], as looplab bases were trained; a Hugging Face base reads bare text.
    """

    def __init__(self, tokenizer: Any, halt_id: int, specials: bool) -> None:
        self.tok, self.halt_id, self.specials = tokenizer, halt_id, specials
        alphabet = bytes(NAMES) + bytes(DIGITS)
        self.char_ids = np.full(256, -1, dtype=np.int64)
        for c in alphabet:
            ids = tokenizer.encode(chr(c))
            if len(ids) != 1:
                raise LooplabError(f"tokenizer {tokenizer.name} splits '{chr(c)}' into {len(ids)} tokens; "
                                   "rlf needs every letter and digit to be one token")
            self.char_ids[c] = ids[0]

    def inputs(self, ch: Chains) -> torch.Tensor:
        if self.tok.is_byte_level:
            ids = ch.prompt.astype(np.int64)
            if self.specials:
                n = len(ids)
                ids = np.concatenate([np.full((n, 1), self.tok.bos_id), ids, np.full((n, 1), self.tok.sep_id)], 1)
            return torch.from_numpy(ids)
        rows = [self.tok.encode(p) for p, _ in ch.texts()]
        if self.specials:
            rows = [[self.tok.bos_id, *r, self.tok.sep_id] for r in rows]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.tok.pad_id] * (width - len(r)) for r in rows], dtype=torch.long)

    def targets(self, ch: Chains, width: int | None = None) -> torch.Tensor:
        """(n, width) loop targets: the steps, then HALT, then IGNORE; width defaults to hops + 1."""
        n, h = ch.steps.shape
        width = width or h + 1
        y = np.full((n, width), IGNORE, dtype=np.int64)
        y[:, :h] = self.char_ids[ch.steps]
        y[:, h] = self.halt_id
        return torch.from_numpy(y)


def pad_cat(parts: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    """Rows of several (n_i, T_i) blocks, right-padded to the widest (byte prompts never need it)."""
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=pad_id) for p in parts])


class ChainStream:
    """An endless seeded stream of training batches: hops uniform in TRAIN_HOPS, the training split
    only. Targets are as wide as the batch's longest chain plus HALT; shorter rows are padded with
    IGNORE. The resumable state is the generator state."""

    def __init__(self, codec: ChainCodec, *, batch_size: int, seed: int, hops: tuple[int, int] = TRAIN_HOPS) -> None:
        self.codec, self.batch_size, self.hops = codec, batch_size, hops
        self.rng = np.random.default_rng([seed, zlib.crc32(b"rlf-train")])

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.codec.inputs(generate(np.random.default_rng(0), 1, self.hops[0])).shape[1]

    def next_batch(self) -> Batch:
        """Chains (B, T) and one target per loop (B, L): the pointer at each hop, then HALT."""
        lo, hi = self.hops
        counts = np.bincount(self.rng.integers(lo, hi + 1, size=self.batch_size), minlength=hi + 1)
        groups = [(h, draw(self.rng, int(c), h, "train")) for h, c in enumerate(counts) if c]
        width = max(h for h, _ in groups) + 1
        x = pad_cat([self.codec.inputs(ch) for _, ch in groups], self.codec.tok.pad_id)  # (B, T)
        y = torch.cat([self.codec.targets(ch, width) for _, ch in groups])  # (B, L)
        perm = torch.from_numpy(self.rng.permutation(self.batch_size))
        return Batch(x[perm], y[perm])

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "hops": list(self.hops), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["hops"]) != self.hops or state["batch_size"] != self.batch_size:
            raise LooplabError(f"chain stream state was saved with hops {state['hops']} and batch size "
                               f"{state['batch_size']}; this stream has {list(self.hops)} and {self.batch_size}")
        self.rng.bit_generator.state = state["rng"]


TASK_TARGETS = ("chain", "value")


def write_task_file(path: str, per_hop: int, seed: int = 0, target: str = "chain") -> None:
    """Training-split chains as a task file ({task, length, prompt, target}) on which a base can be
    trained with `train.py --task_file PATH`, so that it knows the format. target "chain": the whole
    chain written out ("xqd7", each token one lookup); "value": the digit alone."""
    import json

    if target not in TASK_TARGETS:
        raise LooplabError(f"unknown pointer-chain target '{target}'; allowed: {', '.join(TASK_TARGETS)}")
    rng = np.random.default_rng([seed, zlib.crc32(b"rlf-base")])
    with open(path, "w") as f:
        for h in range(TRAIN_HOPS[0], TRAIN_HOPS[1] + 1):
            for prompt, steps in draw(rng, per_hop, h, "train").texts():
                answer = steps if target == "chain" else steps[-1]
                f.write(json.dumps({"task": "pointer", "length": h, "prompt": prompt, "target": answer}) + "\n")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write a pointer-chain task file for training an rlf base")
    ap.add_argument("path")
    ap.add_argument("per_hop", type=int, nargs="?", default=4000, help="chains per hop count 1-5")
    ap.add_argument("--target", choices=TASK_TARGETS, default="chain")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    write_task_file(a.path, a.per_hop, a.seed, a.target)
