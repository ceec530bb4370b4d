"""Every generated target agrees with an independent solver; generation is seeded and well formed."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from looplab.data.tasks import (
    OPT_IN,
    TASKS,
    concat,
    digits_of,
    get_tasks,
    in_format,
    signed_digits,
    training_tasks,
)
from looplab.errors import LooplabError


def all_lengths(task):
    lo, hi = task.train_lengths
    return sorted(set(range(lo, hi + 1)) | set(task.iid_lengths) | set(task.ood_lengths))


@pytest.mark.parametrize("name", list(TASKS))
def test_solver_agrees_with_generator(name):
    task = TASKS[name]
    for seed in range(4):
        for length in all_lengths(task):
            ex = task.generate(np.random.default_rng([seed, length]), 40, length)
            assert len(ex) == 40
            for prompt, target in ex.texts():
                assert task.solve(prompt) == target, (prompt, target)


@pytest.mark.parametrize("name", list(TASKS))
def test_well_formed_and_seeded(name):
    task = TASKS[name]
    for length in (task.train_lengths[1], max(task.ood_lengths)):
        a = task.generate(np.random.default_rng(7), 50, length)
        b = task.generate(np.random.default_rng(7), 50, length)
        c = task.generate(np.random.default_rng(8), 50, length)
        for field in ("prompt", "prompt_len", "target", "target_len"):
            assert np.array_equal(getattr(a, field), getattr(b, field))
        assert a.texts() != c.texts()
        assert a.prompt.dtype == a.target.dtype == np.uint8
        assert a.prompt_len.dtype == a.target_len.dtype == np.int64
        assert a.prompt.shape[1] == a.prompt_len.max() and a.target.shape[1] == a.target_len.max()
        for row, n in zip(a.prompt, a.prompt_len):  # right-padded with zeros, no zero inside
            assert (row[:n] != 0).all() and (row[n:] == 0).all()
        for prompt, target in a.texts():
            assert prompt.startswith(task.tag) and prompt.endswith("=") and prompt.isascii()
            assert target and target.isascii() and target.isprintable()
            assert len(prompt) + len(target) <= (700 if name in OPT_IN else 200)  # passkey is long by design


@pytest.mark.parametrize("name", list(TASKS))
def test_grids(name):
    task = TASKS[name]
    lo, hi = task.train_lengths
    assert 1 <= lo <= hi
    assert all(lo <= n <= hi for n in task.iid_lengths)
    assert min(task.ood_lengths) > hi
    assert 2 * hi <= max(task.ood_lengths) <= 8 * hi


def test_tags_are_unique_and_short():
    tags = [t.tag for t in TASKS.values()]
    assert len(set(tags)) == len(tags) == 17
    assert all(re.fullmatch(r"[A-Z]{3}R?:", tag) for tag in tags)
    assert list(TASKS) == ["mod_add", "parity", "addition", "addition_bin", "multiplication", "copy", "reverse",
                           "dyck", "chain", "compare", "successor", "passkey", "addition_rev", "multiplication_rev",
                           "successor_rev", "parity_long", "parity_fan"]


@pytest.mark.parametrize("name", ["addition", "multiplication", "successor"])
def test_reversed_number_format(name):
    """`<task>_rev` asks the same questions with every number least-significant digit first, on the
    same grids; it is opt-in, so the default task set is unchanged."""
    base, rev = TASKS[name], TASKS[f"{name}_rev"]
    assert (rev.train_lengths, rev.iid_lengths, rev.ood_lengths) == (base.train_lengths, base.iid_lengths,
                                                                      base.ood_lengths)
    for length in (1, base.train_lengths[1], max(base.ood_lengths)):
        plain = base.generate(np.random.default_rng(3), 200, length).texts()
        flipped = rev.generate(np.random.default_rng(3), 200, length).texts()
        for (p, t), (q, u) in zip(plain, flipped):
            numbers = re.findall(r"\d+", p[len(base.tag):])
            assert re.findall(r"\d+", q[len(rev.tag):]) == [x[::-1] for x in numbers]
            assert re.sub(r"\d", "", p[len(base.tag):]) == re.sub(r"\d", "", q[len(rev.tag):])
            assert u == t[::-1]
    assert any(len(t) > 1 and t != t[::-1] for _, t in flipped)
    assert f"{name}_rev" in OPT_IN and f"{name}_rev" not in [t.name for t in get_tasks(None)]


def test_seed_grids():
    assert TASKS["parity"].train_lengths[1] == 8 and TASKS["parity"].ood_lengths == (16, 32, 64)
    assert TASKS["addition"].train_lengths[1] == 4 and TASKS["addition"].ood_lengths == (5, 6, 7, 8)
    prompt, _ = TASKS["parity"].generate(np.random.default_rng(0), 1, 64).texts()[0]
    assert len(prompt) == len("PAR:=") + 64
    prompt, _ = TASKS["addition"].generate(np.random.default_rng(0), 1, 8).texts()[0]
    assert re.fullmatch(r"ADD:[1-9]\d{7}\+[1-9]\d{7}=", prompt)


@pytest.mark.parametrize("name, length", [("dyck", 8), ("dyck", 1), ("dyck", 64), ("parity", 8), ("compare", 4)])
def test_classes_are_balanced(name, length):
    answers = Counter(t for _, t in TASKS[name].generate(np.random.default_rng(0), 2000, length).texts())
    assert len(answers) >= 2
    assert min(answers.values()) / 2000 > 0.2, answers
    if name == "dyck":
        assert 0.45 < answers["1"] / 2000 < 0.55, answers


def test_dyck_negatives_cannot_be_counted():
    """Many unbalanced strings keep every bracket count equal, and the structure is not fixed."""
    texts = TASKS["dyck"].generate(np.random.default_rng(1), 2000, 8).texts()
    bodies = [p[4:-1] for p, t in texts if t == "0"]
    same_counts = [b for b in bodies if b.count("(") == b.count(")") and b.count("[") == b.count("]")]
    assert len(same_counts) / len(bodies) > 0.2  # about a third
    assert all(len(p) == len("DYK:=") + 16 for p, _ in texts)
    assert len({p for p, t in texts if t == "1"}) > 900


def test_successor_has_carries_and_compare_has_near_misses():
    texts = TASKS["successor"].generate(np.random.default_rng(0), 500, 4).texts()
    assert sum(len(t) > len(p) - 5 for p, t in texts) > 20  # 9999 -> 10000 style growth
    assert sum(p[4:-1].endswith("99") for p, _ in texts) > 100
    pairs = [p[4:-1].split("?") for p, _ in TASKS["compare"].generate(np.random.default_rng(0), 500, 8).texts()]
    one_digit = [a for a, b in pairs if sum(x != y for x, y in zip(a, b)) == 1]
    assert len(one_digit) > 50 and all(len(a) == len(b) == 8 for a, b in pairs)


def test_digit_helpers():
    values = np.array([0, 7, 10, 99, 12345, 2**62], dtype=np.int64)
    digits, lens = digits_of(values)
    assert [d[:n].tobytes().decode() for d, n in zip(digits, lens)] == [str(v) for v in values.tolist()]
    signed = np.array([-12, 0, 5, -7, 300], dtype=np.int64)
    text, lens = concat(signed_digits(signed), (digits[:5, :2], np.array([1, 0, 2, 1, 2])))
    assert [t[:n].tobytes().decode() for t, n in zip(text, lens)] == ["-120", "0", "510", "-79", "30012"]


def test_unknown_task():
    with pytest.raises(LooplabError, match="unknown task 'nope'; allowed: mod_add, parity, addition"):
        get_tasks(["copy", "nope"])
    assert [t.name for t in get_tasks(["copy", "copy", "reverse"])] == ["copy", "reverse"]
    assert [t.name for t in get_tasks(None)] == [n for n in TASKS if n not in OPT_IN]
    assert [t.name for t in get_tasks(["passkey"])] == ["passkey"]


def test_answer_format_option_maps_the_arithmetic_tasks():
    """`--answer_format reversed` trains and scores `<task>_rev` for the three arithmetic tasks and
    leaves every other task alone; msd leaves the names as given."""
    assert in_format(["addition", "parity", "successor"], "reversed") == ["addition_rev", "parity", "successor_rev"]
    assert in_format(["addition", "addition_rev"], "reversed") == ["addition_rev"]
    assert in_format(["multiplication"], "msd") == ["multiplication"]
    everything = [t.name for t in training_tasks((), "reversed")]
    assert "multiplication_rev" in everything and "multiplication" not in everything and "copy" in everything
    assert training_tasks(("none",), "reversed") == []
    with pytest.raises(LooplabError, match="allowed: msd, reversed"):
        in_format(["addition"], "lsd")


def test_binary_addition_is_fan_et_al_s_format():
    """Operands of exactly n bits (zeros allowed), the sum in n + 1 bits, least significant bit first."""
    ex = TASKS["addition_bin"].generate(np.random.default_rng(3), 200, 6)
    for prompt, target in ex.texts():
        a, b = prompt[4:-1].split("+")
        assert len(a) == len(b) == 6 and len(target) == 7 and set(a + b + target) <= {"0", "1"}
        assert int(target[::-1], 2) == int(a[::-1], 2) + int(b[::-1], 2)
    assert TASKS["addition_bin"].solve("BIN:11+10=") == "001"  # 3 + 1 = 4, written 001 from the low bit


def test_parity_long_is_parity_at_grazzi_et_al_s_lengths():
    task = TASKS["parity_long"]
    assert (task.train_lengths, task.ood_lengths[-1]) == ((3, 40), 256)
    prompt, target = task.generate(np.random.default_rng(0), 1, 256).texts()[0]
    assert prompt.startswith("PRL:") and len(prompt) == 4 + 256 + 1 and target == str(prompt.count("1") % 2)


def test_parity_fan_is_parity_at_fan_et_al_s_lengths():
    task = TASKS["parity_fan"]
    assert (task.train_lengths, task.ood_lengths) == ((1, 20), (40, 60))
    for prompt, target in task.generate(np.random.default_rng(0), 50, 40).texts():
        assert prompt.startswith("PRF:") and len(prompt) == 4 + 40 + 1 and target == str(prompt.count("1") % 2)
        assert task.solve(prompt) == target
