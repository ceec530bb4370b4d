"""Position ids supplied by the data for arithmetic: `coupled` and `abacus` (ModelConfig.position_ids).

Both give every digit its significance within its number: the runs of digit tokens count 1, 2, 3, ...
from their first digit, which in the least-significant-first formats (`addition_rev`, `addition_bin`,
the other `_rev` tasks) is the units digit, so the digits of equal significance in both operands
and in the answer share an id, and an answer digit's id is known when it is written (decoding needs
nothing but the tokens so far).
- `coupled` (Cho et al., arXiv 2405.20671): these ids, moved up by a base of max_seq_len / 2, are
  the positions the model's own encoding reads (rotary or the absolute table). Every other token
  after the first digit of its example (the operators, '=', the separator) gets significance 0, the
  id beside the units digits, as Cho et al. place each operand's following token: no id then depends
  on the numbers' length, so a longer test problem holds no id unseen in training (measured: with
  the operators at their plain positions, a coupled baseline that learned 1-4 digits perfectly scored
  64% at 5 digits and 0% at 8). Tokens before the first digit (the task tag) keep their positions in
  the example, so a task without numbers falls back to plain positions. The base keeps digit ids
  clear of those plain positions: measured, without it a coupled baseline scored 99% on 4-digit
  but 9% on 2-digit reversed addition, whose digit ids then collided with the tag's positions.
- `abacus` (McLeish et al., arXiv 2405.17399): a learned embedding of the significance (0 for every
  other token) is added to the token embedding; positions stay plain.
In training every example's digit ids are shifted by a random offset in [0, position_offset]
(both papers), so ids beyond the longest training number are trained too; evaluation uses offset 0.
Answer slots (`answer_at_once`) count as digits: slot k holds the answer's k-th digit. The separator
of an example with digits before it gets significance 0 (plus the offset) in both kinds: it predicts
the answer's first digit, so every answer digit is predicted from a token one place below it in
significance.

Letters: R rows, T tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from looplab.data.tasks import DIGIT0

POSITION_IDS = ("plain", "coupled", "abacus")
DIGITS = (DIGIT0, DIGIT0 + 9)  # byte ids of the digit tokens (the byte tokenizer's; no other tokenizer is supported)
BYTE_SEP = 259  # the byte tokenizer's separator (ByteTokenizer().sep_id; a test holds them equal)


def is_digit(tokens: np.ndarray) -> np.ndarray:
    return (tokens >= DIGITS[0]) & (tokens <= DIGITS[1])


def significance(digit: np.ndarray) -> np.ndarray:
    """(R, T) bool -> each digit's place in its run of digits, 1-based; 0 for every other token."""
    cols = np.arange(digit.shape[1])
    start = np.maximum.accumulate(np.where(digit, -1, cols), axis=1) + 1  # first column of each run
    return np.where(digit, cols - start + 1, 0)


def digit_ids(tokens: np.ndarray, positions: np.ndarray, kind: str, *, slot: np.ndarray | None = None,
              offset: np.ndarray | None = None, base: int = 0) -> np.ndarray | None:
    """The ids of `kind` for token rows (R, T) whose within-example positions are `positions` (R, T):
    coupled: base + digit significance (+ offset) where a digit, base (+ offset) for every other token
    after a digit of its example, else the position; abacus: significance (+ offset) where a digit,
    offset for the separator after digits, else 0; None for plain. `slot` marks answer slots (counted as digits), `offset`
    (R, T) each token's example offset, `base` the coupled digits' base (coupled_base)."""
    if kind == "plain":
        return None
    digit = is_digit(tokens) if slot is None else is_digit(tokens) | slot
    shift = np.zeros(tokens.shape, dtype=np.int64) if offset is None else offset
    count = np.cumsum(digit, axis=1)  # digits so far in the row
    first = np.arange(tokens.shape[1]) - positions  # each token's example's first column
    before = np.take_along_axis(np.concatenate([np.zeros_like(count[:, :1]), count], axis=1), first, axis=1)
    # coupled: every other token after a digit of its example (operators, '=', the separator) sits at
    # significance 0, beside the units; abacus: the separator alone
    marks = ~digit if kind == "coupled" else tokens == BYTE_SEP
    after_digits = marks & (count - before > 0)
    lift = shift + (base if kind == "coupled" else 0)
    other = np.where(after_digits, lift, positions if kind == "coupled" else 0)
    return np.where(digit, significance(digit) + lift, other).astype(np.int64)


def coupled_base(max_seq_len: int) -> int:
    """Where coupled digit ids start: half the model's position range (ModelConfig keeps the training
    offset below it, so base + offset + significance stays in range for numbers of up to a few hundred
    digits)."""
    return max_seq_len // 2


def ids_of_rows(idx: torch.Tensor, kind: str, slot_id: int | None = None, base: int = 0) -> torch.Tensor | None:
    """Evaluation: the ids of token rows (B, T), one example per row starting at position 0, offset 0
    (`slot_id`: the answer slots' token, counted as digits; `base`: coupled_base of the model)."""
    if kind == "plain":
        return None
    tokens = idx.cpu().numpy()
    positions = np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
    slot = None if slot_id is None else tokens == slot_id
    return torch.from_numpy(digit_ids(tokens, positions, kind, slot=slot, base=base)).to(idx.device)
