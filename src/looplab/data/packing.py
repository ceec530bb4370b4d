"""Examples -> training batches: `[bos] prompt [sep] answer [eos]`, whole examples packed into rows.

Each row holds whole examples back to back (none is split across rows) and is padded to T + 1
tokens; x = row[:-1], y = row[1:], with y = -100 where there is no loss (padding, and the prompt
when the loss is on answers only). Examples that do not fit in the batch are dropped: the stream
stays a pure function of its seed and batch count.

Letters: B rows, T sequence length, N examples, L tokens per example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from looplab.config import LOSS_ON
from looplab.data.tasks import Examples, concat, get_tasks
from looplab.errors import LooplabError

IGNORE = -100


def encode_example(tokenizer: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(context, answer): what evaluation feeds the model, and what it must produce."""
    context = [tokenizer.bos_id, *tokenizer.encode(prompt), tokenizer.sep_id]
    return context, [*tokenizer.encode(target), tokenizer.eos_id]


def _byte_tokens(tok: Any, ex: Examples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte fast path (token id = byte): flat tokens, per-example lengths, answer flags; no Python loop."""
    n = len(ex)
    one = np.ones(n, dtype=np.int64)

    def special(i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full((n, 1), i, dtype=np.int64), one

    grid, lens = concat(special(tok.bos_id), (ex.prompt.astype(np.int64), ex.prompt_len), special(tok.sep_id),
                        (ex.target.astype(np.int64), ex.target_len), special(tok.eos_id))  # (N, L)
    cols = np.arange(grid.shape[1])[None, :]
    valid = cols < lens[:, None]
    answer = cols >= ex.prompt_len[:, None] + 2
    return grid[valid], lens, answer[valid]


def _generic_tokens(tok: Any, ex: Examples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat, lens, answer = [], [], []
    for prompt, target in ex.texts():
        ctx, ans = encode_example(tok, prompt, target)
        flat += ctx + ans
        answer += [False] * len(ctx) + [True] * len(ans)
        lens.append(len(ctx) + len(ans))
    return np.array(flat, dtype=np.int64), np.array(lens, dtype=np.int64), np.array(answer, dtype=bool)


class AlgoStream:
    """An endless, seeded stream of packed algorithmic batches.

    Examples are generated and packed a block of `block_batches` batches at a time (fewer, larger
    numpy calls). The resumable state is the generator state at the start of the current block
    plus the number of batches already taken from it: loading it regenerates the block exactly.
    """

    def __init__(self, tokenizer: Any, tasks: Sequence[str], *, seq_len: int, batch_size: int, seed: int,
                 loss_on: str = "answer", lengths: Mapping[str, tuple[int, int]] | None = None,
                 block_batches: int = 32) -> None:
        if loss_on not in LOSS_ON:
            raise LooplabError(f"unknown loss_on '{loss_on}'; allowed: {', '.join(LOSS_ON)}")
        self.tok, self.tasks = tokenizer, get_tasks(tasks)
        self.seq_len, self.batch_size, self.loss_on = seq_len, batch_size, loss_on
        self.lengths = {t.name: tuple((lengths or {}).get(t.name, t.train_lengths)) for t in self.tasks}
        self.block_batches = block_batches
        self.rng = np.random.default_rng(seed)
        self._block: tuple[np.ndarray, np.ndarray] | None = None
        self._block_state: dict[str, Any] = {}
        self._cursor = 0

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def set_lengths(self, name: str, lo_hi: tuple[int, int]) -> None:
        """Change a task's training range; takes effect from the next block."""
        self.lengths[name] = tuple(lo_hi)

    def _examples(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`count` examples over all tasks in a seeded random order: flat tokens, lengths, answer flags."""
        flats, lens, answers = [], [], []
        per_task = self.rng.multinomial(count, [1 / len(self.tasks)] * len(self.tasks))
        for task, k in zip(self.tasks, per_task):
            lo, hi = self.lengths[task.name]
            ls = self.rng.integers(lo, hi + 1, size=k)
            for length in np.unique(ls):
                ex = task.generate(self.rng, int((ls == length).sum()), int(length))
                f, n, a = (_byte_tokens if self.tok.is_byte_level else _generic_tokens)(self.tok, ex)
                if int(n.max()) > self.seq_len + 1:
                    raise LooplabError(f"task {task.name} at length {length} needs {int(n.max())} tokens per "
                                       f"example, more than --seq_len {self.seq_len} + 1")
                flats.append(f)
                lens.append(n)
                answers.append(a)
        lens_all, flat, answer = np.concatenate(lens), np.concatenate(flats), np.concatenate(answers)
        starts = np.cumsum(lens_all) - lens_all
        order = self.rng.permutation(len(lens_all))
        new_lens = lens_all[order]
        idx = np.repeat(starts[order] - (np.cumsum(new_lens) - new_lens), new_lens) + np.arange(int(new_lens.sum()))
        return flat[idx], new_lens, answer[idx]

    def _pack_block(self) -> tuple[np.ndarray, np.ndarray]:
        """Fill block_batches * B rows of T + 1 tokens with whole examples."""
        R, W = self.block_batches * self.batch_size, self.seq_len + 1
        rows = np.full(R * W, self.tok.pad_id, dtype=np.int64)
        loss = np.zeros(R * W, dtype=bool)
        r, col = 0, 0
        while r < R:
            mean = np.mean([(lo + hi) / 2 for lo, hi in self.lengths.values()]) + 8
            flat, lens, answer = self._examples(max(16, int(1.1 * (R - r) * W / mean)))
            dest = np.full(len(lens), -1, dtype=np.int64)  # start offset in `rows`, -1 when dropped
            for i, n in enumerate(lens.tolist()):
                if col + n > W:
                    r, col = r + 1, 0
                    if r >= R:
                        break
                dest[i] = r * W + col
                col += n
            keep = np.repeat(dest >= 0, lens)
            tok_dest = np.repeat(dest, lens) + np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
            rows[tok_dest[keep]] = flat[keep]
            loss[tok_dest[keep]] = answer[keep] if self.loss_on == "answer" else True
        return rows.reshape(R, W), loss.reshape(R, W)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T) and y (B, T) int64; y is x shifted by one with -100 where there is no loss."""
        if self._block is None or self._cursor == self.block_batches:
            self._block_state = {"rng": self.rng.bit_generator.state,
                                 "lengths": {k: list(v) for k, v in self.lengths.items()}}
            self._block, self._cursor = self._pack_block(), 0
        rows, loss = self._block
        sl = slice(self._cursor * self.batch_size, (self._cursor + 1) * self.batch_size)
        self._cursor += 1
        x = torch.from_numpy(rows[sl, :-1].copy())
        y = torch.from_numpy(np.where(loss[sl, 1:], rows[sl, 1:], IGNORE))
        return x, y

    def state_dict(self) -> dict[str, Any]:
        if self._block is None:
            return {"rng": self.rng.bit_generator.state, "lengths": {k: list(v) for k, v in self.lengths.items()},
                    "cursor": None}
        return {**self._block_state, "cursor": self._cursor, "next_lengths": {k: list(v) for k, v in self.lengths.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.lengths = {k: tuple(v) for k, v in state["lengths"].items()}
        self._block, self._cursor = None, 0
        if state["cursor"] is not None:
            self._block_state = {"rng": state["rng"], "lengths": state["lengths"]}
            self._block, self._cursor = self._pack_block(), state["cursor"]
            self.lengths = {k: tuple(v) for k, v in state["next_lengths"].items()}
