"""The ten algorithmic tasks: seeded, vectorised generators and independent solvers.

Every example is ASCII: a prompt that starts with the task's tag and ends with `=`, and a short
target. `generate(rng, n, length)` builds n examples as byte matrices with numpy (no per-example
Python in the hot path); `solve(prompt)` re-derives the target from the prompt text with plain
Python and is what the tests check every generated target against. The table of tasks, knobs and
grids is in docs/TASKS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from looplab.errors import LooplabError

LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
DIGIT0 = ord("0")


@dataclass(frozen=True, kw_only=True)
class Examples:
    prompt: np.ndarray  # (n, P) uint8 ASCII, right-padded with 0
    prompt_len: np.ndarray  # (n,) int64
    target: np.ndarray  # (n, A) uint8, right-padded with 0
    target_len: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.prompt_len)

    def texts(self) -> list[tuple[str, str]]:
        return [(p[:lp].tobytes().decode(), t[:lt].tobytes().decode())
                for p, lp, t, lt in zip(self.prompt, self.prompt_len, self.target, self.target_len)]


@dataclass(frozen=True, kw_only=True)
class Task:
    name: str  # registry key, also the seed's name
    tag: str  # prompt prefix that tells tasks apart
    knob: str  # what `length` means
    train_lengths: tuple[int, int]  # inclusive (min, max) of the knob in training
    iid_lengths: tuple[int, ...]  # evaluation lengths inside the training range
    ood_lengths: tuple[int, ...]  # evaluation lengths beyond it
    generate: Callable[[np.random.Generator, int, int], Examples]  # (rng, n, length) -> examples
    solve: Callable[[str], str]  # independent reference: prompt text -> target text


# --- vectorised string building ---------------------------------------------------------------
Piece = tuple[np.ndarray, np.ndarray]  # (n, w) uint8 bytes and (n,) lengths


def lit(text: str, n: int) -> Piece:
    b = np.frombuffer(text.encode(), dtype=np.uint8)
    return np.broadcast_to(b, (n, len(b))), np.full(n, len(b), dtype=np.int64)


def concat(*pieces: Piece) -> Piece:
    """Join pieces row by row, each row's pieces packed left with no gaps."""
    n = len(pieces[0][1])
    total = sum(p[1] for p in pieces)
    out = np.zeros((n, max(1, int(total.max()))), dtype=pieces[0][0].dtype)
    offset = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)[:, None]
    for arr, lens in pieces:
        w = arr.shape[1]
        cols = np.arange(w)
        if w and (lens == w).all():  # every row uses the whole width: one fancy assignment
            out[rows, offset[:, None] + cols] = arr
        elif w:
            r, c = np.nonzero(cols[None, :] < lens[:, None])
            out[r, offset[r] + c] = arr[r, c]
        offset = offset + lens
    return out, total


def digits_of(values: np.ndarray) -> Piece:
    """Non-negative int64 values -> decimal digit strings (most significant first)."""
    values = values.astype(np.int64)
    width = max(1, len(str(int(values.max())))) if len(values) else 1
    little = np.zeros((len(values), width), dtype=np.int64)
    v = values.copy()
    for j in range(width):
        little[:, j] = v % 10
        v //= 10
    powers = 10 ** np.arange(1, width, dtype=np.int64)
    lens = 1 + (values[:, None] >= powers[None, :]).sum(axis=1)
    idx = lens[:, None] - 1 - np.arange(width)[None, :]
    big = np.take_along_axis(little, idx.clip(min=0), axis=1)
    return (big + DIGIT0).astype(np.uint8) * (idx >= 0), lens


def signed_digits(values: np.ndarray) -> Piece:
    mag, lens = digits_of(np.abs(values))
    neg = (values < 0).astype(np.int64)
    sign = np.where(neg[:, None] == 1, ord("-"), 0).astype(np.uint8)
    return concat((sign, neg), (mag, lens))


def random_numbers(rng: np.random.Generator, n: int, n_digits: int) -> np.ndarray:
    """Uniform numbers with exactly n_digits digits (0..9 when n_digits == 1)."""
    lo = 0 if n_digits == 1 else 10 ** (n_digits - 1)
    return rng.integers(lo, 10**n_digits, size=n, dtype=np.int64)


def make(prompt: Piece, target: Piece) -> Examples:
    return Examples(prompt=prompt[0], prompt_len=prompt[1], target=target[0], target_len=target[1])


# --- generators --------------------------------------------------------------------------------
def gen_mod_add(rng: np.random.Generator, n: int, length: int) -> Examples:
    terms = rng.integers(0, 97, size=(n, length))
    pieces = [lit("MOD:", n)]
    for j in range(length):
        pieces += [digits_of(terms[:, j]), lit("+" if j < length - 1 else "%97=", n)]
    return make(concat(*pieces), digits_of(terms.sum(axis=1) % 97))


def gen_parity(rng: np.random.Generator, n: int, length: int) -> Examples:
    bits = rng.integers(0, 2, size=(n, length), dtype=np.uint8)
    body = (bits + DIGIT0, np.full(n, length, dtype=np.int64))
    return make(concat(lit("PAR:", n), body, lit("=", n)), digits_of(bits.sum(axis=1) % 2))


def gen_addition(rng: np.random.Generator, n: int, length: int) -> Examples:
    a, b = random_numbers(rng, n, length), random_numbers(rng, n, length)
    return make(concat(lit("ADD:", n), digits_of(a), lit("+", n), digits_of(b), lit("=", n)), digits_of(a + b))


def gen_multiplication(rng: np.random.Generator, n: int, length: int) -> Examples:
    a, b = random_numbers(rng, n, length), random_numbers(rng, n, length)
    return make(concat(lit("MUL:", n), digits_of(a), lit("*", n), digits_of(b), lit("=", n)), digits_of(a * b))


def _letters(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return LETTERS[rng.integers(0, 26, size=(n, length))]


def gen_copy(rng: np.random.Generator, n: int, length: int) -> Examples:
    s = (_letters(rng, n, length), np.full(n, length, dtype=np.int64))
    return make(concat(lit("CPY:", n), s, lit("=", n)), s)


def gen_reverse(rng: np.random.Generator, n: int, length: int) -> Examples:
    s = _letters(rng, n, length)
    lens = np.full(n, length, dtype=np.int64)
    return make(concat(lit("REV:", n), (s, lens), lit("=", n)), (s[:, ::-1].copy(), lens))


OPEN, CLOSE = np.frombuffer(b"([", dtype=np.uint8), np.frombuffer(b")]", dtype=np.uint8)


def gen_dyck(rng: np.random.Generator, n: int, length: int) -> Examples:
    """Balanced two-bracket strings of `length` (rounded up to even) and, for half of the rows,
    the same string with one bracket's type swapped (still even counts, but mismatched)."""
    half = max(1, (length + 1) // 2)
    m = 2 * half
    # A random sequence with `half` opens and `half` closes, rotated to start after the first
    # minimum of its prefix sums, is a valid bracket structure (the cycle lemma).
    steps = np.where(rng.random((n, m)).argsort(axis=1) < half, 1, -1)
    start = (np.cumsum(steps, axis=1).argmin(axis=1) + 1) % m
    steps = np.take_along_axis(steps, (start[:, None] + np.arange(m)) % m, axis=1)
    kinds = rng.integers(0, 2, size=(n, m))
    stack = np.zeros((n, m), dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    out = np.zeros((n, m), dtype=np.uint8)
    for j in range(m):  # column by column, vectorised over rows: closes take their opener's kind
        is_open = steps[:, j] == 1
        stack[rows[is_open], depth[is_open]] = kinds[is_open, j]
        depth = depth + np.where(is_open, 1, -1)
        kind = np.where(is_open, kinds[:, j], stack[rows, depth])
        out[:, j] = np.where(is_open, OPEN[kind], CLOSE[kind])
    bad = rng.random(n) < 0.5
    pos = rng.integers(0, m, size=n)
    ch = out[rows, pos]
    swapped = {ord("("): ord("["), ord("["): ord("("), ord(")"): ord("]"), ord("]"): ord(")")}
    lut = np.arange(256, dtype=np.uint8)
    for k, v in swapped.items():
        lut[k] = v
    out[rows[bad], pos[bad]] = lut[ch[bad]]
    body = (out, np.full(n, m, dtype=np.int64))
    answer = (np.where(bad, ord("0"), ord("1")).astype(np.uint8)[:, None], np.ones(n, dtype=np.int64))
    return make(concat(lit("DYK:", n), body, lit("=", n)), answer)


def gen_chain(rng: np.random.Generator, n: int, length: int) -> Examples:
    """`length` operations (+ or -) on single digits, evaluated left to right."""
    nums = rng.integers(0, 10, size=(n, length + 1))
    signs = rng.integers(0, 2, size=(n, length))
    total = nums[:, 0] + np.where(signs == 0, nums[:, 1:], -nums[:, 1:]).sum(axis=1)
    pieces = [lit("CHN:", n), digits_of(nums[:, 0])]
    ops = np.frombuffer(b"+-", dtype=np.uint8)
    for j in range(length):
        pieces += [(ops[signs[:, j]][:, None], np.ones(n, dtype=np.int64)), digits_of(nums[:, j + 1])]
    return make(concat(*pieces, lit("=", n)), signed_digits(total))


def gen_compare(rng: np.random.Generator, n: int, length: int) -> Examples:
    """Two numbers of `length` digits; a fifth of the pairs are equal, a fifth differ in one digit."""
    a, b = random_numbers(rng, n, length), random_numbers(rng, n, length)
    u = rng.random(n)
    b = np.where(u < 0.2, a, b)
    near = (u >= 0.2) & (u < 0.4)
    place = 10 ** rng.integers(0, length, size=n)
    digit = (a // place) % 10
    up = np.where(digit == 9, False, np.where(digit == 0, True, rng.random(n) < 0.5))
    b = np.where(near, a + np.where(up, place, -place), b)
    b = np.where((b < 10 ** (length - 1)) & (length > 1), a, b)  # keep exactly `length` digits
    sym = np.frombuffer(b"<=>", dtype=np.uint8)[np.sign(a - b) + 1]
    return make(concat(lit("CMP:", n), digits_of(a), lit("?", n), digits_of(b), lit("=", n)),
                (sym[:, None], np.ones(n, dtype=np.int64)))


def gen_successor(rng: np.random.Generator, n: int, length: int) -> Examples:
    """n -> n + 1; a third of the numbers end in a run of nines, so carries are common."""
    a = random_numbers(rng, n, length)
    nines = rng.integers(1, length + 1, size=n)
    carry = rng.random(n) < 1 / 3
    with_nines = (a // 10**nines) * 10**nines + (10**nines - 1)
    a = np.where(carry & (with_nines < 10**length), with_nines, a)
    return make(concat(lit("SUC:", n), digits_of(a), lit("=", n)), digits_of(a + 1))


# --- independent solvers: parse the prompt text -----------------------------------------------
def _body(prompt: str, tag: str) -> str:
    assert prompt.startswith(tag) and prompt.endswith("="), prompt
    return prompt[len(tag) : -1]


def solve_mod_add(p: str) -> str:
    terms, mod = _body(p, "MOD:").split("%")
    return str(sum(int(t) for t in terms.split("+")) % int(mod))


def solve_parity(p: str) -> str:
    return "1" if _body(p, "PAR:").count("1") % 2 else "0"


def solve_addition(p: str) -> str:
    a, b = _body(p, "ADD:").split("+")
    return str(int(a) + int(b))


def solve_multiplication(p: str) -> str:
    a, b = _body(p, "MUL:").split("*")
    return str(int(a) * int(b))


def solve_copy(p: str) -> str:
    return _body(p, "CPY:")


def solve_reverse(p: str) -> str:
    return _body(p, "REV:")[::-1]


def solve_dyck(p: str) -> str:
    pairs, stack = {")": "(", "]": "["}, []
    for c in _body(p, "DYK:"):
        if c in "([":
            stack.append(c)
        elif not stack or stack.pop() != pairs[c]:
            return "0"
    return "0" if stack else "1"


def solve_chain(p: str) -> str:
    body = _body(p, "CHN:")
    total, sign, num = 0, 1, ""
    for c in body + "+":
        if c.isdigit():
            num += c
        else:
            total += sign * int(num)
            sign, num = (1 if c == "+" else -1), ""
    return str(total)


def solve_compare(p: str) -> str:
    a, b = (int(x) for x in _body(p, "CMP:").split("?"))
    return "<" if a < b else ">" if a > b else "="


def solve_successor(p: str) -> str:
    return str(int(_body(p, "SUC:")) + 1)


def _task(name: str, tag: str, knob: str, train: tuple[int, int], iid: tuple[int, ...], ood: tuple[int, ...],
          gen: Callable[[np.random.Generator, int, int], Examples], solve: Callable[[str], str]) -> Task:
    return Task(name=name, tag=tag, knob=knob, train_lengths=train, iid_lengths=iid, ood_lengths=ood,
                generate=gen, solve=solve)


TASKS: dict[str, Task] = {t.name: t for t in (
    _task("mod_add", "MOD:", "number of terms (each 0-96), sum mod 97", (2, 4), (2, 4), (8, 16, 32),
          gen_mod_add, solve_mod_add),
    _task("parity", "PAR:", "number of bits", (1, 8), (4, 8), (16, 32, 64), gen_parity, solve_parity),
    _task("addition", "ADD:", "digits per operand", (1, 4), (2, 4), (5, 6, 8), gen_addition, solve_addition),
    _task("multiplication", "MUL:", "digits per operand", (1, 3), (2, 3), (4, 5, 6),
          gen_multiplication, solve_multiplication),
    _task("copy", "CPY:", "letters to copy", (1, 16), (8, 16), (32, 64), gen_copy, solve_copy),
    _task("reverse", "REV:", "letters to reverse", (1, 16), (8, 16), (32, 64), gen_reverse, solve_reverse),
    _task("dyck", "DYK:", "brackets in the string (two kinds; is it balanced?)", (2, 16), (8, 16), (32, 64, 128),
          gen_dyck, solve_dyck),
    _task("chain", "CHN:", "+/- operations on single digits", (1, 4), (2, 4), (8, 16, 32), gen_chain, solve_chain),
    _task("compare", "CMP:", "digits per number", (1, 4), (2, 4), (8, 12, 16), gen_compare, solve_compare),
    _task("successor", "SUC:", "digits", (1, 4), (2, 4), (8, 12, 16), gen_successor, solve_successor),
)}


def get_tasks(names: Sequence[str] | None) -> list[Task]:
    """Tasks by name (all when None or empty); an unknown name is an error listing the allowed ones."""
    if not names:
        return list(TASKS.values())
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise LooplabError(f"unknown task '{unknown[0]}'; allowed: {', '.join(TASKS)}")
    return [TASKS[n] for n in dict.fromkeys(names)]
