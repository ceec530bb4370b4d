"""The ten algorithmic tasks: seeded, vectorised generators and independent solvers.

Every example is ASCII: a prompt that starts with the task's tag and ends with `=`, and a short
target. `generate(rng, n, length)` builds n examples as byte matrices with numpy (no per-example
Python); `solve(prompt)` re-derives the target from the prompt text with plain Python and is what
the tests check every generated target against. The table of tasks, knobs and grids is in
docs/TASKS.md. Train-short / test-long grids follow the length-generalisation setups of the
Chomsky-hierarchy benchmark (arXiv:2207.02098).

Letters: n examples, w width of a byte matrix, k bracket pairs, m = 2k brackets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from looplab.config import ANSWER_FORMATS
from looplab.errors import LooplabError

LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
DIGIT0 = ord("0")
POW10 = 10 ** np.arange(19, dtype=np.int64)  # every power of ten an int64 holds
MOD = 97  # modulus of mod_add


@dataclass(frozen=True, kw_only=True)
class Examples:
    prompt: np.ndarray  # (n, P) uint8 ASCII, right-padded with 0
    prompt_len: np.ndarray  # (n,) int64
    target: np.ndarray  # (n, A) uint8, right-padded with 0
    target_len: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.prompt_len)

    def texts(self) -> list[tuple[str, str]]:
        """(prompt, target) strings, one pair per example."""
        return [(p[:lp].tobytes().decode("ascii"), t[:lt].tobytes().decode("ascii"))
                for p, lp, t, lt in zip(self.prompt, self.prompt_len.tolist(), self.target, self.target_len.tolist())]


@dataclass(frozen=True, kw_only=True)
class Task:
    name: str  # registry key, also the seed's name
    tag: str  # prompt prefix that tells tasks apart
    knob: str  # what `length` means
    train_lengths: tuple[int, int]  # inclusive (min, max) of the knob in training
    iid_lengths: tuple[int, ...]  # evaluation lengths inside the training range
    ood_lengths: tuple[int, ...]  # evaluation lengths beyond it (2x to 8x the training max)
    generate: Callable[[np.random.Generator, int, int], Examples]  # (rng, n, length) -> examples
    solve: Callable[[str], str]  # independent reference: prompt text -> target text
    answers: tuple[str, ...] = ()  # every possible answer, for a task with few (test sets hold each equally often)


# --- vectorised string building ---------------------------------------------------------------
Piece = tuple[np.ndarray, np.ndarray]  # (n, w) uint8 bytes, left-aligned, and (n,) lengths in use


def lit(text: str, n: int) -> Piece:
    """The same literal text in every row."""
    b = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.broadcast_to(b, (n, len(b))), np.full(n, len(b), dtype=np.int64)


def full(arr: np.ndarray) -> Piece:
    """A byte matrix whose every row uses its whole width."""
    return arr, np.full(len(arr), arr.shape[1], dtype=np.int64)


def compact(slots: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Move each row's kept cells to the left, in order; the rest of the row is 0."""
    r, c = np.nonzero(keep)
    col = np.cumsum(keep, axis=1)[r, c] - 1
    out = np.zeros((len(slots), max(1, int(col.max(initial=0)) + 1)), dtype=slots.dtype)
    out[r, col] = slots[r, c]
    return out


def concat(*pieces: Piece) -> Piece:
    """Join pieces row by row with no gaps between them."""
    slots = np.concatenate([arr for arr, _ in pieces], axis=1)  # (n, sum of widths)
    total = sum(lens for _, lens in pieces)
    if all((lens == arr.shape[1]).all() for arr, lens in pieces):  # fixed layout: nothing to move
        return slots, total
    keep = np.concatenate([np.arange(arr.shape[1]) < lens[:, None] for arr, lens in pieces], axis=1)
    return compact(slots, keep), total


def digits_of(values: np.ndarray) -> Piece:
    """Non-negative int64 values -> decimal digit strings, most significant digit first."""
    values = values.astype(np.int64)
    width = len(str(int(values.max()))) if len(values) else 1
    lens = 1 + (values[:, None] >= POW10[1:width]).sum(axis=1)  # (n,)
    exps = lens[:, None] - 1 - np.arange(width)  # (n, w) power of ten of each column
    digits = (values[:, None] // POW10[exps.clip(min=0)]) % 10
    return np.where(exps >= 0, digits + DIGIT0, 0).astype(np.uint8), lens


def signed_digits(values: np.ndarray) -> Piece:
    """int64 values -> decimal strings with a leading '-' for negatives."""
    neg = values < 0
    sign = np.where(neg, ord("-"), 0).astype(np.uint8)[:, None]
    return concat((sign, neg.astype(np.int64)), digits_of(np.abs(values)))


def random_numbers(rng: np.random.Generator, n: int, n_digits: int) -> np.ndarray:
    """Uniform numbers with exactly n_digits digits (0..9 when n_digits == 1)."""
    lo = 0 if n_digits == 1 else 10 ** (n_digits - 1)
    return rng.integers(lo, 10**n_digits, size=n, dtype=np.int64)


def symbol(chars: bytes, which: np.ndarray) -> Piece:
    """One character per row, picked from `chars` by index."""
    return full(np.frombuffer(chars, dtype=np.uint8)[which][:, None])


def make(prompt: Piece, target: Piece) -> Examples:
    return Examples(prompt=prompt[0], prompt_len=prompt[1], target=target[0], target_len=target[1])


# --- generators --------------------------------------------------------------------------------
def gen_mod_add(rng: np.random.Generator, n: int, length: int) -> Examples:
    """`length` terms in 0..96 joined by '+', then '%97'; the answer is the sum mod 97."""
    terms = rng.integers(0, MOD, size=(n, length))
    slots = np.empty((n, length, 3), dtype=np.uint8)  # per term: tens digit, units digit, separator
    slots[:, :, 0] = terms // 10 + DIGIT0
    slots[:, :, 1] = terms % 10 + DIGIT0
    slots[:, :, 2] = ord("+")
    slots[:, -1, 2] = ord("%")
    keep = np.ones((n, length, 3), dtype=bool)
    keep[:, :, 0] = terms >= 10
    body = compact(slots.reshape(n, 3 * length), keep.reshape(n, 3 * length))
    prompt = concat(lit("MOD:", n), (body, keep.sum(axis=(1, 2))), lit(f"{MOD}=", n))
    return make(prompt, digits_of(terms.sum(axis=1) % MOD))


def gen_parity(rng: np.random.Generator, n: int, length: int) -> Examples:
    bits = rng.integers(0, 2, size=(n, length), dtype=np.uint8)
    prompt = concat(lit("PAR:", n), full(bits + DIGIT0), lit("=", n))
    return make(prompt, symbol(b"01", bits.sum(axis=1, dtype=np.int64) % 2))


def gen_addition_bin(rng: np.random.Generator, n: int, length: int) -> Examples:
    """Binary addition as Fan et al. pose it: two `length`-bit operands (leading zeros allowed, so every
    operand has exactly `length` bits) and their sum zero-padded to length + 1 bits, every number
    least-significant bit first (the carry then runs left to right, the order the answer is written)."""
    a = rng.integers(0, 2, size=(n, length), dtype=np.uint8)
    b = rng.integers(0, 2, size=(n, length), dtype=np.uint8)
    out = np.zeros((n, length + 1), dtype=np.uint8)
    carry = np.zeros(n, dtype=np.uint8)
    for i in range(length):  # bit i of both, least significant first
        total = a[:, i] + b[:, i] + carry
        out[:, i], carry = total % 2, total // 2
    out[:, length] = carry
    return make(concat(lit("BIN:", n), full(a + DIGIT0), lit("+", n), full(b + DIGIT0), lit("=", n)),
                full(out + DIGIT0))


def gen_addition(rng: np.random.Generator, n: int, length: int) -> Examples:
    a, b = random_numbers(rng, n, length), random_numbers(rng, n, length)
    return make(concat(lit("ADD:", n), digits_of(a), lit("+", n), digits_of(b), lit("=", n)), digits_of(a + b))


def gen_multiplication(rng: np.random.Generator, n: int, length: int) -> Examples:
    a, b = random_numbers(rng, n, length), random_numbers(rng, n, length)
    return make(concat(lit("MUL:", n), digits_of(a), lit("*", n), digits_of(b), lit("=", n)), digits_of(a * b))


def gen_copy(rng: np.random.Generator, n: int, length: int) -> Examples:
    s = full(LETTERS[rng.integers(0, 26, size=(n, length))])
    return make(concat(lit("CPY:", n), s, lit("=", n)), s)


def gen_reverse(rng: np.random.Generator, n: int, length: int) -> Examples:
    s = LETTERS[rng.integers(0, 26, size=(n, length))]
    return make(concat(lit("REV:", n), full(s), lit("=", n)), full(s[:, ::-1]))


OPEN, CLOSE = np.frombuffer(b"([", dtype=np.uint8), np.frombuffer(b")]", dtype=np.uint8)
def pair_up(is_open: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (n, k) of matched openers and closers in well-nested rows of (n, m) open flags.

    Both ends of a pair sit at the same outer depth, and at a fixed depth the brackets alternate
    opener, closer, opener...: sorting by (outer depth, position) lists each pair as neighbours."""
    n, m = is_open.shape
    outer = np.cumsum(np.where(is_open, 1, -1), axis=1) - is_open  # depth outside each bracket
    order = np.argsort(outer * m + np.arange(m), axis=1)  # (n, m)
    return order[:, 0::2], order[:, 1::2]


def nested_pair(is_open: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (n, m) open flags, a random opener at depth >= 1 and the opener of its parent pair
    (positions), and whether the row has any nested pair at all (False for `()()...`)."""
    n, m = is_open.shape
    outer = np.cumsum(np.where(is_open, 1, -1), axis=1) - is_open  # depth outside each bracket
    inner = is_open & (outer > 0)  # openers inside another pair
    child = np.where(inner, rng.random((n, m)), -1.0).argmax(axis=1)  # (n,) a uniform such opener
    cols = np.arange(m)
    before = is_open & (outer == outer[np.arange(n), child][:, None] - 1) & (cols < child[:, None])
    parent = m - 1 - before[:, ::-1].argmax(axis=1)  # the last opener one level up, before the child
    return child, parent, inner.any(axis=1)


def gen_dyck(rng: np.random.Generator, n: int, length: int) -> Examples:
    """`length` pairs of two bracket kinds; is the string balanced? Half the rows are.

    Balanced rows are uniform bracket structures with a random kind per pair. An unbalanced row is a
    balanced one in which a pair and the pair directly around it take different kinds and then swap
    their closers' kinds, as in `([)]`: every count per kind, and the depth of each kind and of both
    together, stay those of a balanced string, so counting cannot tell (tests measure it). A row with
    no nested pair (`()()...`) swaps the closers of two pairs side by side (`(][)`: only the depth of
    each kind apart shows it); at length 1, `(]` or `[)`."""
    k, m = length, 2 * length
    rows = np.arange(n)
    # k opens and k + 1 closes in random order, rotated to start just after the first lowest prefix
    # sum, stay >= 0 until the final close (cycle lemma); dropping it leaves a uniform Dyck path.
    up = rng.random((n, m + 1)).argsort(axis=1) < k  # (n, m + 1)
    start = np.cumsum(np.where(up, 1, -1), axis=1).argmin(axis=1) + 1
    is_open = np.take_along_axis(up, (start[:, None] + np.arange(m)) % (m + 1), axis=1)  # (n, m)
    opens, closes = pair_up(is_open)
    partner = np.empty((n, m), dtype=np.int64)  # opener position -> its closer's position
    np.put_along_axis(partner, opens, closes, axis=1)
    kind = np.zeros((n, m), dtype=np.int64)  # per position: 0 round, 1 square; a pair shares its kind
    pair_kind = rng.integers(0, 2, size=(n, k))
    np.put_along_axis(kind, opens, pair_kind, axis=1)
    np.put_along_axis(kind, closes, pair_kind, axis=1)

    bad = rng.random(n) < 0.5
    inner, outer, nested = nested_pair(is_open, rng)
    if k > 1:  # no nested pair (`()()...`): two pairs side by side instead, e.g. `(][)`
        j = rng.integers(0, k, size=n)
        inner = np.where(nested, inner, opens[rows, j])
        outer = np.where(nested, outer, opens[rows, (j + rng.integers(1, k, size=n)) % k])
    swap = bad & (nested | (k > 1))
    c, r = rng.integers(0, 2, size=n)[swap], rows[swap]
    kind[r, outer[swap]], kind[r, inner[swap]] = c, 1 - c  # the two pairs' openers: different kinds
    kind[r, partner[r, outer[swap]]], kind[r, partner[r, inner[swap]]] = 1 - c, c  # closers swapped
    r = rows[bad & ~swap]  # a single pair: `(]` or `[)`
    kind[r, partner[r, opens[r, 0]]] ^= 1
    s = np.where(is_open, OPEN[kind], CLOSE[kind]).astype(np.uint8)
    prompt = concat(lit("DYK:", n), full(s), lit("=", n))
    return make(prompt, symbol(b"01", (~bad).astype(np.int64)))


def gen_chain(rng: np.random.Generator, n: int, length: int) -> Examples:
    """A digit, then `length` times '+' or '-' and a digit; the answer is the plain integer result."""
    nums = rng.integers(0, 10, size=(n, length + 1))
    minus = rng.integers(0, 2, size=(n, length))
    total = nums[:, 0] + np.where(minus == 1, -nums[:, 1:], nums[:, 1:]).sum(axis=1)
    body = np.empty((n, 2 * length + 1), dtype=np.uint8)  # d op d op ... d
    body[:, 0::2] = nums + DIGIT0
    body[:, 1::2] = np.frombuffer(b"+-", dtype=np.uint8)[minus]
    return make(concat(lit("CHN:", n), full(body), lit("=", n)), signed_digits(total))


def gen_compare(rng: np.random.Generator, n: int, length: int) -> Examples:
    """Two numbers of `length` digits and one of '<=>'; a fifth of the pairs are equal and a fifth
    differ in a single digit, so the whole number must be read."""
    a, b = random_numbers(rng, n, length), random_numbers(rng, n, length)
    u = rng.random(n)
    near = (u >= 0.2) & (u < 0.4)
    place = POW10[rng.integers(0, length, size=n)]
    digit = (a // place) % 10
    up = (digit == 0) | ((digit != 9) & (rng.random(n) < 0.5))
    b = np.where(u < 0.2, a, np.where(near, a + np.where(up, place, -place), b))
    b = np.where((length > 1) & (b < 10 ** (length - 1)), a, b)  # a leading 1 turned 0: keep the width
    prompt = concat(lit("CMP:", n), digits_of(a), lit("?", n), digits_of(b), lit("=", n))
    return make(prompt, symbol(b"<=>", np.sign(a - b) + 1))


def gen_successor(rng: np.random.Generator, n: int, length: int) -> Examples:
    """n -> n + 1; a third of the numbers end in a run of nines, so long carries are common."""
    a = random_numbers(rng, n, length)
    nines = POW10[rng.integers(1, length + 1, size=n)]
    with_nines = a // nines * nines + nines - 1
    a = np.where((rng.random(n) < 1 / 3) & (with_nines < 10**length), with_nines, a)
    return make(concat(lit("SUC:", n), digits_of(a), lit("=", n)), digits_of(a + 1))


PASSKEY_FILLER = "the grass is green. the sky is blue. "  # one unit of filler (passkey retrieval, arXiv 2305.16300)
PASSKEY_DIGITS = 5


def passkey_examples(rng: np.random.Generator, n: int, length: int, depth: float | None = None) -> Examples:
    """`length` filler units with the line `the key is NNNNN. ` before unit round(depth * length)
    (a uniform unit per row when depth is None); the answer is the key. The long-context probe
    (looplab.eval.longctx) builds its haystacks with this same function."""
    key = random_numbers(rng, n, PASSKEY_DIGITS)
    at = rng.integers(0, length + 1, size=n) if depth is None else np.full(n, round(depth * length))
    unit = np.frombuffer(PASSKEY_FILLER.encode("ascii"), dtype=np.uint8)
    filler = np.broadcast_to(np.tile(unit, length), (n, len(unit) * length))
    needle = concat(lit("the key is ", n), digits_of(key), lit(". ", n))
    prompt = concat(lit("KEY:", n), (filler, at * len(unit)), needle, (filler, (length - at) * len(unit)), lit("=", n))
    return make(prompt, digits_of(key))


def gen_passkey(rng: np.random.Generator, n: int, length: int) -> Examples:
    return passkey_examples(rng, n, length)


# --- independent solvers: plain Python on the prompt text -------------------------------------
def _body(prompt: str, tag: str) -> str:
    if not (prompt.startswith(tag) and prompt.endswith("=")):
        raise ValueError(f"prompt {prompt!r} is not of the form {tag}...=")
    return prompt[len(tag) : -1]


def solve_mod_add(p: str) -> str:
    terms, mod = _body(p, "MOD:").split("%")
    return str(sum(int(t) for t in terms.split("+")) % int(mod))


def solve_parity(p: str) -> str:
    return str(_body(p, "PAR:").count("1") % 2)


def solve_addition(p: str) -> str:
    a, b = _body(p, "ADD:").split("+")
    return str(int(a) + int(b))


def solve_addition_bin(p: str) -> str:
    a, b = _body(p, "BIN:").split("+")
    total = int(a[::-1], 2) + int(b[::-1], 2)
    return format(total, "b").zfill(len(a) + 1)[::-1]


def solve_multiplication(p: str) -> str:
    a, b = _body(p, "MUL:").split("*")
    return str(int(a) * int(b))


def solve_copy(p: str) -> str:
    return _body(p, "CPY:")


def solve_reverse(p: str) -> str:
    return _body(p, "REV:")[::-1]


def solve_dyck(p: str) -> str:
    partner, stack = {")": "(", "]": "["}, []
    for c in _body(p, "DYK:"):
        if c in "([":
            stack.append(c)
        elif not stack or stack.pop() != partner[c]:
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


def solve_passkey(p: str) -> str:
    body = _body(p, "KEY:")
    start = body.index("the key is ") + len("the key is ")
    return body[start : body.index(".", start)]


def _task(name: str, tag: str, knob: str, train: tuple[int, int], iid: tuple[int, ...], ood: tuple[int, ...],
          gen: Callable[[np.random.Generator, int, int], Examples], solve: Callable[[str], str],
          answers: tuple[str, ...] = ()) -> Task:
    return Task(name=name, tag=tag, knob=knob, train_lengths=train, iid_lengths=iid, ood_lengths=ood,
                generate=gen, solve=solve, answers=answers)


TASKS: dict[str, Task] = {t.name: t for t in (
    _task("mod_add", "MOD:", "number of terms (each 0-96), summed mod 97", (2, 4), (2, 4), (8, 16, 32),
          gen_mod_add, solve_mod_add),
    _task("parity", "PAR:", "number of bits", (1, 8), (4, 8), (16, 32, 64), gen_parity, solve_parity,
          answers=("0", "1")),
    _task("addition", "ADD:", "digits per operand", (1, 4), (2, 4), (5, 6, 7, 8), gen_addition, solve_addition),
    _task("addition_bin", "BIN:", "bits per operand (zero-padded, least significant first, as Fan et al.)", (1, 8),
          (4, 8), (12, 16, 32), gen_addition_bin, solve_addition_bin),
    _task("multiplication", "MUL:", "digits per operand", (1, 3), (2, 3), (4, 5, 6),
          gen_multiplication, solve_multiplication),
    _task("copy", "CPY:", "letters to copy", (1, 8), (4, 8), (16, 32, 64), gen_copy, solve_copy),
    _task("reverse", "REV:", "letters to reverse", (1, 8), (4, 8), (16, 32, 64), gen_reverse, solve_reverse),
    _task("dyck", "DYK:", "bracket pairs (two kinds); is the string balanced?", (1, 8), (4, 8), (16, 32, 64),
          gen_dyck, solve_dyck, answers=("0", "1")),
    _task("chain", "CHN:", "+/- operations on single digits", (1, 4), (2, 4), (8, 16, 32), gen_chain, solve_chain),
    _task("compare", "CMP:", "digits per number", (1, 4), (2, 4), (8, 12, 16), gen_compare, solve_compare,
          answers=("<", "=", ">")),
    _task("successor", "SUC:", "digits", (1, 4), (2, 4), (8, 12, 16), gen_successor, solve_successor),
    _task("passkey", "KEY:", "filler units of 37 letters around the key", (1, 4), (2, 4), (8, 16),
          gen_passkey, solve_passkey),
)}

def reverse_numbers(arr: np.ndarray) -> np.ndarray:
    """Every run of digits in each row of an (n, w) byte matrix written in reverse order; every other
    byte (operators, tags, the 0 padding) stays where it is."""
    cols = np.arange(arr.shape[1])
    digit = (arr >= DIGIT0) & (arr <= DIGIT0 + 9)
    start = np.maximum.accumulate(np.where(digit, -1, cols), axis=1) + 1  # first column of each run
    end = np.minimum.accumulate(np.where(digit, arr.shape[1], cols)[:, ::-1], axis=1)[:, ::-1]  # one past its last
    src = np.where(digit, start + end - 1 - cols, cols)
    return np.take_along_axis(arr, src, axis=1)


def reversed_numbers(base: Task) -> Task:
    """`base` with every number, operands and answer, written least-significant digit first; the
    prompt gets its own tag (`ADDR:`), so both formats can train side by side. The answer-format axis:
    in this order the digits that combine sit at the same distance from each other whatever their
    place, and reversed arithmetic is far easier to learn and to extend to longer numbers
    (arXiv 2307.03381, 2405.17399)."""
    tag = base.tag[:-1] + "R:"

    def generate(rng: np.random.Generator, n: int, length: int) -> Examples:
        ex = base.generate(rng, n, length)
        body = (reverse_numbers(ex.prompt[:, len(base.tag):]), ex.prompt_len - len(base.tag))
        prompt = concat(lit(tag, n), body)
        return Examples(prompt=prompt[0], prompt_len=prompt[1], target=reverse_numbers(ex.target),
                        target_len=ex.target_len)

    def solve(prompt: str) -> str:
        return flip_numbers(base.solve(base.tag + flip_numbers(_body(prompt, tag)) + "="))

    return dataclasses.replace(base, name=f"{base.name}_rev", tag=tag,
                               knob=f"{base.knob}; numbers least-significant digit first",
                               generate=generate, solve=solve)


def flip_numbers(text: str) -> str:
    """Plain-Python reference of `reverse_numbers` on one string."""
    return re.sub(r"\d+", lambda m: m.group(0)[::-1], text)


REVERSIBLE = ("addition", "multiplication", "successor")  # tasks with a reversed-answer form, `<name>_rev`
TASKS.update({f"{name}_rev": reversed_numbers(TASKS[name]) for name in REVERSIBLE})



def retagged(base: Task, name: str, tag: str, train: tuple[int, int], iid: tuple[int, ...], ood: tuple[int, ...],
             why: str) -> Task:
    """`base` under another name and tag at other lengths (a paper's ranges), generated and solved by
    base's own functions."""
    def generate(rng: np.random.Generator, n: int, length: int) -> Examples:
        ex = base.generate(rng, n, length)
        prompt = concat(lit(tag, n), (ex.prompt[:, len(base.tag):], ex.prompt_len - len(base.tag)))
        return Examples(prompt=prompt[0], prompt_len=prompt[1], target=ex.target, target_len=ex.target_len)

    return dataclasses.replace(base, name=name, tag=tag, knob=f"{base.knob} ({why})", train_lengths=train,
                               iid_lengths=iid, ood_lengths=ood, generate=generate,
                               solve=lambda prompt: base.solve(base.tag + _body(prompt, tag) + "="))


# Grazzi et al.'s parity lengths (arXiv 2411.12537, Table 3): trained on 3-40 bits, tested on 40-256
TASKS["parity_long"] = retagged(TASKS["parity"], "parity_long", "PRL:", (3, 40), (20, 40), (64, 128, 256),
                                "trained on 3-40, tested to 256, as Grazzi et al.")
# Fan et al.'s parity lengths (arXiv 2409.15647): trained up to 20 bits, near perfect beyond 40
TASKS["parity_fan"] = retagged(TASKS["parity"], "parity_fan", "PRF:", (1, 20), (10, 20), (40, 60),
                               "trained up to 20, tested to 60, as Fan et al.")
# trained and evaluated only when named: prompts of hundreds of tokens (passkey, parity_long), other formats
OPT_IN = ("passkey", "parity_long", "parity_fan", "addition_bin", *(f"{name}_rev" for name in REVERSIBLE))


NO_TASKS = "none"  # --alg_tasks none: train on --task_file tasks only


def in_format(names: Sequence[str], answer_format: str) -> list[str]:
    """Task names with the arithmetic ones (REVERSIBLE) in `answer_format`: `addition` stays itself
    for msd and becomes `addition_rev` for reversed; every other name is unchanged. An empty list
    (every default task) is expanded first, so that reversed applies to it too."""
    if answer_format not in ANSWER_FORMATS:
        raise LooplabError(f"unknown answer_format '{answer_format}'; allowed: {', '.join(ANSWER_FORMATS)}")
    names = list(names) or [t.name for t in get_tasks(None)]
    if answer_format == "msd":
        return names
    return list(dict.fromkeys(f"{n}_rev" if n in REVERSIBLE else n for n in names))


def training_tasks(names: Sequence[str], answer_format: str = "msd") -> list[Task]:
    """The built-in tasks a run trains on: `get_tasks` of the names in `answer_format`, or none at all
    for `--alg_tasks none`."""
    if tuple(names) == (NO_TASKS,):
        return []
    return get_tasks(in_format(names, answer_format))


def get_tasks(names: Sequence[str | Task] | None) -> list[Task]:
    """Tasks by name, first occurrence order (all but OPT_IN when None or empty); unknown names are an error."""
    if not names:
        return [t for t in TASKS.values() if t.name not in OPT_IN]
    unknown = [n for n in names if not isinstance(n, Task) and n not in TASKS]
    if unknown:
        raise LooplabError(f"unknown task '{unknown[0]}'; allowed: {', '.join(TASKS)}")
    return [n if isinstance(n, Task) else TASKS[n] for n in dict.fromkeys(names)]  # Task objects: --task_file
