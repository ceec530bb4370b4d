"""Every generated target agrees with an independent solver; generation is seeded and well formed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from looplab.data.tasks import TASKS, get_tasks
from looplab.errors import LooplabError


def all_lengths(task):
    lo, hi = task.train_lengths
    return sorted(set(range(lo, hi + 1)) | set(task.iid_lengths) | set(task.ood_lengths))


@pytest.mark.parametrize("name", list(TASKS))
def test_solver_agrees_with_generator(name):
    task = TASKS[name]
    for seed in range(4):
        for length in all_lengths(task):
            for prompt, target in task.generate(np.random.default_rng([seed, length]), 40, length).texts():
                assert task.solve(prompt) == target, (prompt, target)


@pytest.mark.parametrize("name", list(TASKS))
def test_well_formed_and_seeded(name):
    task = TASKS[name]
    length = task.train_lengths[1]
    a = task.generate(np.random.default_rng(7), 50, length)
    b = task.generate(np.random.default_rng(7), 50, length)
    c = task.generate(np.random.default_rng(8), 50, length)
    for field in ("prompt", "prompt_len", "target", "target_len"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.texts() != c.texts()
    for prompt, target in a.texts():
        assert prompt.startswith(task.tag) and prompt.endswith("=") and prompt.isascii() and target.isascii()
        assert target and "\n" not in target
    assert min(task.ood_lengths) > task.train_lengths[1]
    assert max(task.ood_lengths) >= 2 * task.train_lengths[1]
    assert set(task.iid_lengths) <= set(range(task.train_lengths[0], task.train_lengths[1] + 1))


def test_tags_are_unique():
    tags = [t.tag for t in TASKS.values()]
    assert len(set(tags)) == len(tags) == 10


def test_seed_grids():
    assert TASKS["parity"].train_lengths[1] == 8 and max(TASKS["parity"].ood_lengths) == 64
    assert TASKS["addition"].train_lengths[1] == 4 and max(TASKS["addition"].ood_lengths) == 8


@pytest.mark.parametrize("name, length", [("dyck", 16), ("parity", 8), ("compare", 4)])
def test_classes_are_balanced(name, length):
    answers = Counter(t for _, t in TASKS[name].generate(np.random.default_rng(0), 2000, length).texts())
    assert len(answers) >= 2
    assert min(answers.values()) / 2000 > 0.2, answers


def test_successor_has_carries_and_addition_carries_out():
    texts = TASKS["successor"].generate(np.random.default_rng(0), 500, 4).texts()
    assert sum(len(t) > len(p) - 5 for p, t in texts) > 20  # 9999 -> 10000 style growth
    assert any(p[4:-1].endswith("99") for p, _ in texts)


def test_unknown_task():
    with pytest.raises(LooplabError, match="unknown task 'nope'; allowed: mod_add, parity"):
        get_tasks(["copy", "nope"])
    assert [t.name for t in get_tasks(["copy", "copy", "reverse"])] == ["copy", "reverse"]
    assert len(get_tasks(None)) == 10
