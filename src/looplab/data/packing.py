"""Examples -> training batches: `[bos] prompt [sep] answer [eos]`, whole examples packed into rows.

With `at_once` (a model with `answer_at_once`, Fan et al.'s answer slots) the input holds a blank
slot (the pad token) wherever the answer's tokens would be, while the targets keep them: the
position before slot i predicts answer token i from the prompt alone.

Each row holds whole examples back to back (none is split across rows) and is padded to T + 1
tokens; x = row[:-1], y = row[1:], with y = -100 where there is no loss (padding, and the prompt
when the loss is on answers only). Rows are filled next-fit: examples in a random order, each in
the current row if it fits, else in a fresh row. Examples left over when a block of rows is full
are dropped, so the stream stays a pure function of its generator state.

Tokens: `byte_tokens` is the fast path for byte-level tokenizers (token id = byte, numpy only);
`generic_tokens` is the reference that goes through `encode_example` one example at a time.

Letters: B rows per batch, T sequence length, W = T + 1 row width, R rows per block,
N examples, M tokens of all examples, S slots per example in the byte grid.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from looplab.config import LOSS_ON, PACKING
from looplab.data.batch import IGNORE, Batch, Segments
from looplab.data.digit_ids import POSITION_IDS, digit_ids
from looplab.data.tasks import TASKS, Examples, Task, get_tasks
from looplab.errors import LooplabError

LAYOUTS = tuple(p for p in PACKING if p != "auto")  # what a stream lays out (the trainer resolves `auto`)
Tokens = tuple[np.ndarray, np.ndarray, np.ndarray]  # flat ids (M,), lengths (N,), answer flags (M,)


def encode_example(tokenizer: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(context, answer): what evaluation feeds the model, and what it must produce."""
    context = [tokenizer.bos_id, *tokenizer.encode(prompt), tokenizer.sep_id]
    return context, [*tokenizer.encode(target), tokenizer.eos_id]


def generic_tokens(tok: Any, ex: Examples) -> Tokens:
    """Any tokenizer: every example through `encode_example`."""
    flat: list[int] = []
    answer: list[bool] = []
    lens = []
    for prompt, target in ex.texts():
        ctx, ans = encode_example(tok, prompt, target)
        flat += ctx + ans
        answer += [False] * len(ctx) + [True] * len(ans)
        lens.append(len(ctx) + len(ans))
    return np.array(flat, dtype=np.int64), np.array(lens, dtype=np.int64), np.array(answer, dtype=bool)


def byte_tokens(tok: Any, ex: Examples) -> Tokens:
    """Byte-level tokenizers (id = byte): the same tokens as `generic_tokens`, built with numpy.

    Each example is laid out in fixed slots [bos | P prompt bytes | sep | A target bytes | eos];
    reading the used slots in row-major order gives the examples' tokens back to back."""
    n, P, A = len(ex), ex.prompt.shape[1], ex.target.shape[1]

    def special(i: int) -> np.ndarray:
        return np.full((n, 1), i, dtype=np.int16)

    slots = np.concatenate([special(tok.bos_id), ex.prompt, special(tok.sep_id), ex.target,
                            special(tok.eos_id)], axis=1)  # (N, S) with S = P + A + 3
    used = np.ones(slots.shape, dtype=bool)
    used[:, 1 : P + 1] = np.arange(P) < ex.prompt_len[:, None]
    used[:, P + 2 : P + 2 + A] = np.arange(A) < ex.target_len[:, None]
    is_answer = np.broadcast_to(np.arange(slots.shape[1]) >= P + 2, slots.shape)
    return slots[used], ex.prompt_len + ex.target_len + 3, is_answer[used]


def next_fit(lens: np.ndarray, width: int, n_rows: int) -> tuple[np.ndarray, bool]:
    """Start offset of each example in a flat (n_rows * width) block, -1 for those that miss it,
    and whether the rows are full (the example after the last row exists and did not fit)."""
    cum = [0, *np.cumsum(lens).tolist()]  # cum[i]: tokens before example i
    firsts, i = [], 0
    while len(firsts) < n_rows and i < len(lens):
        firsts.append(i)
        i = bisect_right(cum, cum[i] + width, lo=i) - 1  # first example that no longer fits
    bounds = np.array([*firsts, i])
    row = np.repeat(np.arange(len(firsts)), np.diff(bounds))  # row of each placed example
    cum_arr = np.asarray(cum[:i], dtype=np.int64)
    start = np.full(len(lens), -1, dtype=np.int64)
    start[:i] = row * width + cum_arr - cum_arr[bounds[:-1]][row]
    return start, len(firsts) == n_rows and i < len(lens)


class AlgoStream:
    """An endless, seeded stream of packed batches drawn from the algorithmic tasks.

    Examples are generated and packed a block of `block_batches` batches at a time (fewer, larger
    numpy calls). The resumable state is the generator state at the start of the current block
    plus the number of batches already taken from it: loading it regenerates the block exactly.
    A curriculum steers the mix through `set_weights` (which tasks, how often) and `set_lengths`
    (which lengths, optionally with a probability per length); both act from the next block on.
    """

    def __init__(self, tokenizer: Any, tasks: Sequence[str | Task], *, seq_len: int, batch_size: int, seed: int,
                 loss_on: str = "answer", lengths: Mapping[str, tuple[int, int]] | None = None,
                 block_batches: int = 32, packing: str = "packed", at_once: bool = False,
                 position_ids: str = "plain", position_offset: int = 0, coupled_base: int = 0) -> None:
        if loss_on not in LOSS_ON:
            raise LooplabError(f"unknown loss_on '{loss_on}'; allowed: {', '.join(LOSS_ON)}")
        if packing not in LAYOUTS:
            raise LooplabError(f"unknown packing '{packing}'; allowed: {', '.join(LAYOUTS)}")
        for name, value in (("seq_len", seq_len), ("batch_size", batch_size), ("block_batches", block_batches)):
            if value < 1:
                raise LooplabError(f"{name} must be positive, got {value}")
        self.tok, self.tasks = tokenizer, get_tasks(tasks)
        self.seq_len, self.batch_size, self.loss_on, self.packing = seq_len, batch_size, loss_on, packing
        self.block_batches = block_batches
        self.at_once = at_once  # answers reach the input as blank slots (ModelConfig.answer_at_once)
        if position_ids not in POSITION_IDS:
            raise LooplabError(f"unknown position_ids '{position_ids}'; allowed: {', '.join(POSITION_IDS)}")
        self.position_ids, self.position_offset = position_ids, position_offset  # data.digit_ids
        self.coupled_base = coupled_base
        self.to_tokens = byte_tokens if tokenizer.is_byte_level else generic_tokens
        self.lengths = {t.name: t.train_lengths for t in self.tasks}
        self.length_p: dict[str, tuple[float, ...] | None] = {t.name: None for t in self.tasks}  # None: uniform
        self.weights = {t.name: 1.0 for t in self.tasks}  # relative sampling weight; 0 leaves a task out
        for name, lo_hi in (lengths or {}).items():
            if name not in TASKS and name not in self.lengths:
                raise LooplabError(f"unknown task '{name}' in lengths; allowed: {', '.join(TASKS)}")
            if name in self.lengths:
                self.set_lengths(name, lo_hi)
        self._mean = self._mean_tokens()
        self.rng = np.random.default_rng(seed)
        self._block: dict[str, np.ndarray] | None = None  # x, y rows (R, T), row lengths (R,), segments, ids
        self._block_state: dict[str, Any] = {}
        self._cursor = 0

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def set_lengths(self, name: str, lo_hi: Sequence[int], probs: Sequence[float] | None = None) -> None:
        """Change a task's training range (inclusive) and, optionally, the probability of each length
        in it (default uniform); takes effect from the next block."""
        lo, hi = (int(v) for v in lo_hi)
        if name not in self.lengths:
            raise LooplabError(f"task '{name}' is not in this stream; allowed: {', '.join(self.lengths)}")
        if not 1 <= lo <= hi:
            raise LooplabError(f"lengths for task '{name}' must satisfy 1 <= min <= max, got ({lo}, {hi})")
        p = None
        if probs is not None:
            arr = np.asarray(probs, dtype=np.float64)
            if arr.shape != (hi - lo + 1,) or (arr < 0).any() or arr.sum() <= 0:
                raise LooplabError(f"length probabilities for task '{name}' need {hi - lo + 1} non-negative "
                                   f"values with a positive sum, got {list(probs)}")
            p = tuple((arr / arr.sum()).tolist())
        if self.lengths[name] != (lo, hi) or self.length_p[name] != p:
            self.lengths[name], self.length_p[name] = (lo, hi), p
            if hasattr(self, "_mean"):  # set after the constructor's overrides
                self._mean = self._mean_tokens()

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Relative sampling weight per task (0: inactive); tasks not named keep theirs."""
        new = {**self.weights}
        for name, w in weights.items():
            if name not in new:
                raise LooplabError(f"task '{name}' is not in this stream; allowed: {', '.join(new)}")
            if not float(w) >= 0:
                raise LooplabError(f"weight of task '{name}' must be >= 0, got {w}")
            new[name] = float(w)
        if sum(new.values()) <= 0:
            raise LooplabError("at least one task needs a positive weight")
        if new != self.weights:
            self.weights = new
            self._mean = self._mean_tokens()

    def _task_p(self) -> list[float]:
        w = [self.weights[t.name] for t in self.tasks]
        if len(set(w)) == 1:  # the plain uniform mix, exactly as the stream always drew it
            return [1 / len(w)] * len(w)
        return [v / sum(w) for v in w]

    def _tokens(self, task: Task, ex: Examples, length: int) -> Tokens:
        flat, lens, answer = self.to_tokens(self.tok, ex)
        if int(lens.max()) > self.seq_len + 1:
            raise LooplabError(f"task {task.name} at length {length} needs {int(lens.max())} tokens per "
                               f"example, more than seq_len {self.seq_len} + 1")
        return flat, lens, answer

    def _mean_tokens(self) -> float:
        """Mean tokens per example over the stream's mix, from a fixed probe (not the stream's rng);
        it sizes each block's draw, and fails early on examples longer than a row."""
        probe, per_task = np.random.default_rng(0), []
        for task in self.tasks:
            lo, hi = self.lengths[task.name]
            means = [self._tokens(task, task.generate(probe, 32, n), n)[1].mean() for n in range(lo, hi + 1)]
            per_task.append(np.average(means, weights=self.length_p[task.name]))
        p = self._task_p()
        return float(np.mean(per_task) if len(set(p)) == 1 else np.average(per_task, weights=p))

    def _draw(self, count: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """`count` examples, task uniform and length uniform in its range: tokens grouped by
        (task, length) plus each example's length (N,), and the random order in which they are packed."""
        parts = []
        per_task = self.rng.multinomial(count, self._task_p())
        for task, k in zip(self.tasks, per_task.tolist()):
            lo, hi = self.lengths[task.name]
            if self.length_p[task.name] is None:
                sizes = np.bincount(self.rng.integers(0, hi - lo + 1, size=k), minlength=hi - lo + 1)
            else:
                sizes = self.rng.multinomial(k, self.length_p[task.name])
            for length, size in enumerate(sizes.tolist(), start=lo):
                if size:
                    tokens = self._tokens(task, task.generate(self.rng, size, length), length)
                    parts.append((*tokens, np.full(size, length, dtype=np.int64)))
        tokens = tuple(np.concatenate(arrays) for arrays in zip(*parts))
        return tokens, self.rng.permutation(len(tokens[1]))

    def _pack_block(self) -> dict[str, np.ndarray]:
        """x and y for R = block_batches * B rows, filled next-fit with whole examples, and each row's
        length: the task length of its example, the largest one in a packed row (0: an empty row).
        With packing "isolated", also each token's example and position within it (R, T) each, and no
        target crosses from one example to the next; with coupled or abacus position ids, those."""
        R, W = self.block_batches * self.batch_size, self.seq_len + 1
        # the digit ids' random offsets come from a generator of their own, seeded by the block's start
        # state, so the stream's own draws (and so its data) are the same whatever the position ids
        offsets = np.random.default_rng(self.rng.bit_generator.state["state"]["state"]) \
            if self.position_offset else None
        draws: list[tuple[Tokens, np.ndarray]] = []
        n_seen, rows_left = 0, R
        while True:  # draw until the rows are full; a typical block needs one draw
            count = R if self.packing == "single" else int(rows_left * W / self._mean) + 16
            tokens, order = self._draw(count)
            draws.append((tokens, order + n_seen))
            n_seen += len(order)
            flat, lens, answer, knob = (np.concatenate(a) for a in zip(*(d[0] for d in draws)))
            order = np.concatenate([d[1] for d in draws])
            if self.packing == "single":
                start_in_order, full = np.arange(len(order), dtype=np.int64) * W, True
                break
            start_in_order, full = next_fit(lens[order], W, R)
            if full:
                break
            rows_left = max(1, R - int(start_in_order.max()) // W)
        start = np.empty_like(start_in_order)
        start[order] = start_in_order  # (N,) in grouped order
        src = np.cumsum(lens) - lens
        dest = np.arange(len(flat)) + np.repeat(start - src, lens)  # (M,) flat position in the block
        placed = np.repeat(start >= 0, lens)
        rows = np.full(R * W, self.tok.pad_id, dtype=np.int64)
        rows[dest[placed]] = flat[placed]
        loss = np.zeros(R * W, dtype=bool)
        loss[dest[placed]] = answer[placed] if self.loss_on == "answer" else True
        rows, loss = rows.reshape(R, W), loss.reshape(R, W)
        x = rows[:, :-1]
        slot = np.zeros(R * W, dtype=bool)
        slot[dest[placed]] = answer[placed]
        slot = slot.reshape(R, W)[:, :-1]
        if self.at_once:  # the answer's tokens reach the input as blank slots; the targets keep them
            x = np.where(slot, self.tok.pad_id, x)
        shift = None  # each token's example offset for digit ids (None: 0)
        if offsets is not None:
            shift = np.zeros(R * W, dtype=np.int64)
            shift[dest[placed]] = np.repeat(offsets.integers(0, self.position_offset + 1, len(lens)), lens)[placed]
            shift = shift.reshape(R, W)[:, :-1]
        row_length = np.zeros(R, dtype=np.int64)
        np.maximum.at(row_length, start[start >= 0] // W, knob[start >= 0])
        y = np.where(loss[:, 1:], rows[:, 1:], IGNORE)
        out = {"x": np.ascontiguousarray(x), "y": y, "lengths": row_length}
        if self.packing != "isolated":
            ids = digit_ids(x, np.broadcast_to(np.arange(x.shape[1]), x.shape), self.position_ids,
                            slot=slot if self.at_once else None, offset=shift,
                            base=self.coupled_base)
            return out if ids is None else {**out, "ids": ids}
        example = np.full(R * W, -1, dtype=np.int64)  # padding: an example of its own
        example[dest[placed]] = np.repeat(np.arange(len(lens)), lens)[placed]
        position = np.zeros(R * W, dtype=np.int64)
        position[dest[placed]] = (np.arange(len(flat)) - np.repeat(src, lens))[placed]
        example, position = example.reshape(R, W), position.reshape(R, W)
        out["y"] = np.where(example[:, 1:] == example[:, :-1], y, IGNORE)  # no target across two examples
        out["example"], out["position"] = np.ascontiguousarray(example[:, :-1]), np.ascontiguousarray(position[:, :-1])
        ids = digit_ids(x, out["position"], self.position_ids, slot=slot if self.at_once else None, offset=shift,
                        base=self.coupled_base)
        return out if ids is None else {**out, "ids": ids}

    def next_batch(self) -> Batch:
        """The next B rows: tokens (B, T), targets (B, T) (the tokens shifted by one, IGNORE where there
        is no loss), each row's task length, and with packing "isolated" its examples' segments."""
        if self._block is None or self._cursor == self.block_batches:
            self._block_state = {"rng": self.rng.bit_generator.state, "lengths": self._lengths_state(),
                                 "mix": self._mix_state()}
            self._block, self._cursor = self._pack_block(), 0
        sl = slice(self._cursor * self.batch_size, (self._cursor + 1) * self.batch_size)
        self._cursor += 1
        part = {k: torch.from_numpy(v[sl].copy()) for k, v in self._block.items()}
        segments = Segments(part["example"], part["position"]) if "example" in part else None
        ids = part.get("ids")
        return Batch(part["x"], part["y"], part["lengths"], segments,
                     position_ids=ids if self.position_ids == "coupled" else None,
                     abacus_ids=ids if self.position_ids == "abacus" else None)

    def _lengths_state(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.lengths.items()}

    def _mix_state(self) -> dict[str, Any]:
        return {"weights": dict(self.weights),
                "length_p": {k: None if v is None else list(v) for k, v in self.length_p.items()}}

    def _apply(self, lengths: Mapping[str, Sequence[int]], mix: Mapping[str, Any] | None) -> None:
        for name, lo_hi in lengths.items():
            self.set_lengths(name, lo_hi, (mix or {}).get("length_p", {}).get(name))
        if mix:
            self.set_weights(mix["weights"])

    def _config(self) -> dict[str, Any]:
        out = {"tasks": [t.name for t in self.tasks], "seq_len": self.seq_len, "batch_size": self.batch_size,
               "loss_on": self.loss_on, "block_batches": self.block_batches}
        return out if self.packing == "packed" else {**out, "packing": self.packing}  # old states hold no key

    def state_dict(self) -> dict[str, Any]:
        """Plain Python (JSON-safe): the generator state at the start of the current block, the
        lengths it was drawn with, the batches taken from it, and the lengths for the next block."""
        base = {"config": self._config(), "next_lengths": self._lengths_state(), "next_mix": self._mix_state()}
        if self._block is None:
            return {**base, "rng": self.rng.bit_generator.state, "lengths": self._lengths_state(),
                    "mix": self._mix_state(), "cursor": None}
        return {**base, **self._block_state, "cursor": self._cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("config") != self._config():
            raise LooplabError(f"data stream state was saved with {state.get('config')}, which differs from "
                               f"this stream's {self._config()}; the stream cannot resume exactly")
        self.rng.bit_generator.state = state["rng"]
        self._block, self._cursor = None, 0
        if state["cursor"] is not None:
            self._apply(state["lengths"], state.get("mix"))
            self._block_state = {"rng": state["rng"], "lengths": state["lengths"], "mix": state.get("mix")}
            self._block, self._cursor = self._pack_block(), state["cursor"]
        self._apply(state["next_lengths"], state.get("next_mix"))
