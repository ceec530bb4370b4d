"""Per-task curricula: competence tracking that moves each task's difficulty and unlocks tasks.

Difficulty is a task's length knob. A task at level k trains on lengths up to `levels[k]`: the
top length with probability 1 - jitter, the easier ones sharing `jitter`. Competence is an EMA
of exact-match accuracy probed at the current top length; it resets when the level changes, since
it measured the old level. A level rises when the EMA reaches `up` and falls when it drops to
`down`, after at least `min_evals` probes at the level and `cooldown` steps since the last change;
falling back waits for `down_evals` probes at the level (hysteresis: a fresh level always starts
near zero, and falling back at once makes a task oscillate between two lengths).

`linear` trains every task from the start. `schedule` ignores competence: the maximum length rises
one level every `steps_per_level` steps and lengths are drawn uniformly up to it (Fan et al.). `dag` starts with the tasks that have no
prerequisites and unlocks a task once each of its prerequisites (among the trained tasks) has
held an EMA of at least `unlock` for `patience` consecutive probes; competent tasks are then
replayed with a `replay` share of the mix while the rest trains on the frontier. The idea follows
competence-based curricula (Platanios et al., arXiv:1903.09848) and automatic curricula over task
graphs (Matiisen et al., arXiv:1707.00183).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from looplab.data.tasks import TASKS, Task
from looplab.errors import LooplabError

# task -> tasks it builds on. Names absent from a run (or from this table) impose nothing.
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "successor": (),
    "addition": ("successor",),
    "multiplication": ("addition",),
    "compare": ("successor",),
    "chain": ("addition",),
    "mod_add": ("addition",),
    "copy": (),
    "reverse": ("copy",),
    "parity": (),
    "dyck": ("parity",),
}


@dataclass
class TaskState:
    level: int = 0  # index into the task's levels
    ema: float | None = None  # competence at the current level; None until probed there
    evals: int = 0  # probes at the current level
    last_change: int = 0  # step of the last level change
    unlocked: bool = True  # trained at all (dag: after its prerequisites)
    streak: int = 0  # consecutive probes with ema >= unlock (dag)
    competent: bool = False  # held the unlock threshold for `patience` probes (dag)


def task_levels(task: Task) -> list[int]:
    """The lengths a task's difficulty steps through: its training range, or a task file's lengths."""
    lo, hi = task.train_lengths
    return list(range(lo, hi + 1)) if task.name in TASKS else list(task.iid_lengths)


class Curriculum:
    """The `linear` strategy: every task trains; each task's difficulty follows its competence."""

    strategy = "linear"

    def __init__(self, tasks: Sequence[Task], *, cooldown: int = 0, min_evals: int = 1, jitter: float = 0.1,
                 decay: float = 0.5, up: float = 0.9, down: float = 0.3, unlock: float = 0.8,
                 patience: int = 2, replay: float = 0.2, down_evals: int = 5) -> None:
        if not 0 <= jitter < 1 or not 0 <= decay < 1 or not 0 <= replay < 1:
            raise LooplabError(f"curriculum jitter, decay and replay must be in [0, 1), got {jitter}, {decay}, {replay}")
        if cooldown < 0 or min_evals < 1 or patience < 1:
            raise LooplabError("--curriculum_cooldown must be >= 0 and --curriculum_min_task_evals >= 1")
        if not 0 <= down < up <= 1:
            raise LooplabError(f"curriculum thresholds need 0 <= down < up <= 1, got down {down}, up {up}")
        self.levels = {t.name: task_levels(t) for t in tasks}
        self.cooldown, self.min_evals, self.jitter, self.decay = cooldown, min_evals, jitter, decay
        self.up, self.down, self.unlock, self.patience, self.replay = up, down, unlock, patience, replay
        self.down_evals = down_evals
        self.state = {name: TaskState() for name in self.levels}
        self.events: list[dict[str, Any]] = []  # every level change and unlock, in order

    # --- what the data stream should draw -----------------------------------------------------
    def difficulty(self, name: str) -> int:
        return self.levels[name][self.state[name].level]

    def active(self) -> list[str]:
        return [n for n, s in self.state.items() if s.unlocked]

    def length_mix(self, name: str) -> tuple[tuple[int, int], list[float]]:
        """(lo, hi) and a probability per length in it: the top with 1 - jitter, easier levels
        sharing jitter, lengths a task file lacks 0."""
        levels, k = self.levels[name], self.state[name].level
        lo, hi = levels[0], levels[k]
        probs = [0.0] * (hi - lo + 1)
        probs[-1] = 1.0 if k == 0 else 1.0 - self.jitter
        for n in levels[:k]:
            probs[n - lo] = self.jitter / k
        return (lo, hi), probs

    def weights(self) -> dict[str, float]:
        return {n: 1.0 if s.unlocked else 0.0 for n, s in self.state.items()}

    def apply(self, stream: Any) -> None:
        """Point an AlgoStream at the current difficulties and task mix (from its next block)."""
        for name in self.levels:
            stream.set_lengths(name, *self.length_mix(name))
        stream.set_weights(self.weights())

    # --- learning from probes -----------------------------------------------------------------
    def update(self, step: int, acc: Mapping[str, float]) -> list[dict[str, Any]]:
        """Fold in probe accuracies (task -> exact match at its current difficulty); return the
        events this caused."""
        new = []
        for name, a in acc.items():
            s = self.state.get(name)
            if s is None or not s.unlocked:
                continue
            s.ema = float(a) if s.ema is None else self.decay * s.ema + (1 - self.decay) * float(a)
            s.evals += 1
            s.streak = s.streak + 1 if s.ema >= self.unlock else 0
            s.competent = s.competent or s.streak >= self.patience
            if s.evals < self.min_evals or step - s.last_change < self.cooldown:
                continue
            move = 1 if s.ema >= self.up else -1 if s.ema <= self.down and s.evals >= self.down_evals else 0
            if move and 0 <= s.level + move < len(self.levels[name]):
                s.level += move
                s.ema, s.evals, s.last_change = None, 0, step
                new.append(self._event(step, name, "up" if move > 0 else "down"))
        new += self.unlocks(step)
        return new

    def unlocks(self, step: int) -> list[dict[str, Any]]:
        return []

    def _event(self, step: int, name: str, kind: str) -> dict[str, Any]:
        event = {"step": step, "task": name, "event": kind, "difficulty": self.difficulty(name)}
        self.events.append(event)
        return event

    def snapshot(self) -> dict[str, Any]:
        """One metrics row's worth: difficulty (0 while locked), competence and active tasks."""
        row: dict[str, Any] = {}
        for name, s in self.state.items():
            row[f"curriculum/{name}"] = self.difficulty(name) if s.unlocked else 0
            if s.ema is not None:
                row[f"competence/{name}"] = s.ema
        row["curriculum_active"] = self.active()
        return row

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "tasks": {n: asdict(s) for n, s in self.state.items()},
                "events": list(self.events)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("strategy") != self.strategy or set(state.get("tasks", {})) != set(self.state):
            raise LooplabError(f"curriculum state was saved for strategy {state.get('strategy')} and tasks "
                               f"{sorted(state.get('tasks', {}))}; this run uses {self.strategy} and "
                               f"{sorted(self.state)}")
        for name, fields in state["tasks"].items():
            s = TaskState(**fields)
            if not 0 <= s.level < len(self.levels[name]):
                raise LooplabError(f"curriculum state has level {s.level} for task '{name}', outside its levels")
            self.state[name] = s
        self.events = list(state["events"])


class DagCurriculum(Curriculum):
    """The `dag` strategy: tasks unlock along PREREQUISITES; competent tasks are replayed."""

    strategy = "dag"

    def __init__(self, tasks: Sequence[Task], **kw: Any) -> None:
        super().__init__(tasks, **kw)
        self.requires = {n: tuple(p for p in PREREQUISITES.get(n, ()) if p in self.levels) for n in self.levels}
        for name, s in self.state.items():
            s.unlocked = not self.requires[name]

    def unlocks(self, step: int) -> list[dict[str, Any]]:
        new = []
        for name, s in self.state.items():
            if not s.unlocked and all(self.state[p].competent for p in self.requires[name]):
                s.unlocked, s.last_change = True, step
                new.append(self._event(step, name, "unlock"))
        return new

    def weights(self) -> dict[str, float]:
        """Frontier tasks (unlocked, not yet competent) share 1 - replay, competent ones replay."""
        frontier = [n for n, s in self.state.items() if s.unlocked and not s.competent]
        review = [n for n, s in self.state.items() if s.unlocked and s.competent]
        out = {n: 0.0 for n in self.state}
        if not frontier or not review:
            out.update({n: 1.0 for n in frontier + review})
            return out
        out.update({n: (1 - self.replay) / len(frontier) for n in frontier})
        out.update({n: self.replay / len(review) for n in review})
        return out


class ScheduleCurriculum(Curriculum):
    """The `schedule` strategy: every task's maximum training length rises one level every
    `steps_per_level` optimiser steps, whatever the probes say, and training draws lengths uniformly up
    to it (Fan et al., arXiv 2409.15647: +1 every 500 steps for parity, 1,600 for addition). Probes are
    still taken and logged."""

    strategy = "schedule"

    def __init__(self, tasks: Sequence[Task], *, steps_per_level: int = 500, **kw: Any) -> None:
        super().__init__(tasks, **kw)
        if steps_per_level < 1:
            raise LooplabError(f"--curriculum_schedule_steps must be >= 1, got {steps_per_level}")
        self.steps_per_level = steps_per_level

    def length_mix(self, name: str) -> tuple[tuple[int, int], list[float]]:
        levels, k = self.levels[name], self.state[name].level
        lo, hi = levels[0], levels[k]
        allowed = set(levels[: k + 1])
        return (lo, hi), [1.0 if n in allowed else 0.0 for n in range(lo, hi + 1)]

    def update(self, step: int, acc: Mapping[str, float]) -> list[dict[str, Any]]:
        new = []
        for name, s in self.state.items():
            if name in acc:
                s.ema = float(acc[name])
                s.evals += 1
            level = min(len(self.levels[name]) - 1, step // self.steps_per_level)
            if level != s.level:
                s.level, s.evals, s.last_change = level, 0, step
                new.append(self._event(step, name, "up"))
        return new


CURRICULA: dict[str, type[Curriculum]] = {"linear": Curriculum, "dag": DagCurriculum, "schedule": ScheduleCurriculum}


def build_curriculum(strategy: str, tasks: Sequence[Task], **kw: Any) -> Curriculum:
    if strategy not in CURRICULA:
        raise LooplabError(f"unknown task curriculum strategy '{strategy}'; allowed: {', '.join(CURRICULA)}")
    return CURRICULA[strategy](tasks, **kw)
