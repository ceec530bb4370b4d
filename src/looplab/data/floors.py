"""Chance floors: the exact match a model scores without reading the prompt.

The floor of a (task, length) cell is the share of the most frequent answer: what always giving the
single best constant answer would score. A scored cell computes it on its own problems
(`answer_floor`; 1/k exactly on the balanced test cells of parity, compare and dyck);
`chance_floor` estimates it for a task and length from FLOOR_DRAWS examples of the task's generator
with a fixed seed (what reading older results, without a floor of their own, still needs): 1/2 for
parity and dyck, about 0.4 for compare (its generator gives '<' and '>' 40% of the time each), and
close to 0 for tasks whose answers are spread over many strings (copy, addition). Reports put it beside every accuracy and normalise by it, so that a
binary task at 50% is not read as half-learned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np

from looplab.data.tasks import TASKS, Task

FLOOR_DRAWS = 4096  # examples per estimate; the standard error of a floor near 1/2 is under 0.01
FLOOR_SEED = 20_241_201  # a generator of its own: floors never depend on a run's seed


def chance_floor(task: Task, length: int) -> float:
    """Accuracy of the best constant answer at this length (registered tasks are cached)."""
    if TASKS.get(task.name) is task:
        return _registered_floor(task.name, length)
    return _floor(task, length)


@cache
def _registered_floor(name: str, length: int) -> float:
    return _floor(TASKS[name], length)


def _floor(task: Task, length: int) -> float:
    ex = task.generate(np.random.default_rng([FLOOR_SEED, length]), FLOOR_DRAWS, length)
    return answer_floor([row[:n].tobytes() for row, n in zip(ex.target, ex.target_len.tolist())])


def answer_floor(targets: Sequence[str | bytes]) -> float:
    """The share of the most frequent target: the floor of a scored cell, computed on its own problems
    (1/k exactly on a balanced test cell)."""
    return max(Counter(targets).values()) / len(targets) if len(targets) else 0.0


def normalised(acc: float, floor: float) -> float:
    """(acc - floor) / (1 - floor): 0 at the floor, 1 at perfect, negative below the floor."""
    return (acc - floor) / (1 - floor) if floor < 1 else 0.0
