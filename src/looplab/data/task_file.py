"""Tasks read from JSONL files: one record per line, `{"task", "length", "prompt", "target"}`.

A file may hold several tasks. Each becomes a `Task` that the stream samples like a built-in one:
`generate(rng, n, length)` draws n records of that length with replacement (a length the file
lacks draws from the longest length below it, so a range with gaps still trains), and `solve`
looks the prompt up in the records. Text must be ASCII, as for the built-in tasks. Every length
in the file is an in-distribution evaluation length; `suite_custom` scores other files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from looplab.data.tasks import TASKS, Examples, Task
from looplab.errors import LooplabError

FIELDS = ("task", "length", "prompt", "target")
Record = tuple[str, int, str, str]  # task, length, prompt, target


def read_records(path: str | Path) -> list[Record]:
    """Every record of a task file, in file order; a malformed line is an error naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise LooplabError(f"task file '{path}' does not exist" if not p.exists() else f"task file '{path}' is not a file")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LooplabError(f"cannot read task file '{path}' ({type(e).__name__})") from None
    out = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            out.append(_record(line, f"{path}:{i}"))
    if not out:
        raise LooplabError(f"task file '{path}' holds no records")
    return out


def _record(line: str, where: str) -> Record:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise LooplabError(f"{where}: invalid JSON ({e.msg})") from None
    if not isinstance(rec, dict):
        raise LooplabError(f"{where}: expected an object with fields {', '.join(FIELDS)}")
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise LooplabError(f"{where}: missing field '{missing[0]}'; records need {', '.join(FIELDS)}")
    task, length, prompt, target = (rec[f] for f in FIELDS)
    if not isinstance(task, str) or not task.strip() or not task.replace("_", "").isalnum():
        raise LooplabError(f"{where}: 'task' must be a name of letters, digits and '_', got {task!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise LooplabError(f"{where}: 'length' must be a positive integer, got {length!r}")
    for name, text in (("prompt", prompt), ("target", target)):
        if not isinstance(text, str) or not text:
            raise LooplabError(f"{where}: '{name}' must be a non-empty string")
        if not text.isascii():
            raise LooplabError(f"{where}: '{name}' must be ASCII text")
    return task, length, prompt, target


def group_records(records: Sequence[Record]) -> dict[str, dict[int, list[tuple[str, str]]]]:
    """task -> length -> [(prompt, target)], lengths sorted."""
    out: dict[str, dict[int, list[tuple[str, str]]]] = {}
    for task, length, prompt, target in records:
        out.setdefault(task, {}).setdefault(length, []).append((prompt, target))
    return {t: dict(sorted(by_len.items())) for t, by_len in out.items()}


def _matrix(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.array([len(t) for t in texts], dtype=np.int64)
    out = np.zeros((len(texts), max(1, int(lens.max(initial=0)))), dtype=np.uint8)  # (n, w)
    for i, t in enumerate(texts):
        out[i, : len(t)] = np.frombuffer(t.encode("ascii"), dtype=np.uint8)
    return out, lens


def make_task(name: str, by_length: dict[int, list[tuple[str, str]]], source: str) -> Task:
    lengths = sorted(by_length)
    answers = {p: t for pairs in by_length.values() for p, t in pairs}

    def generate(rng: np.random.Generator, n: int, length: int) -> Examples:
        below = [k for k in lengths if k <= length]
        if not below:
            raise LooplabError(f"task '{name}' from {source} has no records of length {length} or shorter")
        pool = by_length[below[-1]]
        picks = [pool[i] for i in rng.integers(0, len(pool), size=n).tolist()]
        prompt, prompt_len = _matrix([p for p, _ in picks])
        target, target_len = _matrix([t for _, t in picks])
        return Examples(prompt=prompt, prompt_len=prompt_len, target=target, target_len=target_len)

    def solve(prompt: str) -> str:
        if prompt not in answers:
            raise ValueError(f"prompt {prompt!r} is not in task '{name}' of {source}")
        return answers[prompt]

    return Task(name=name, tag="", knob=f"length field of {source}", train_lengths=(lengths[0], lengths[-1]),
                iid_lengths=tuple(lengths), ood_lengths=(), generate=generate, solve=solve)


def load_task_files(paths: Sequence[str]) -> list[Task]:
    """Tasks from one or more files; a task name may not repeat a built-in one or span two files."""
    tasks: dict[str, Task] = {}
    for path in paths:
        for name, by_length in group_records(read_records(path)).items():
            if name in TASKS:
                raise LooplabError(f"task file '{path}' defines '{name}', which is a built-in task; rename it")
            if name in tasks:
                raise LooplabError(f"task '{name}' appears in more than one --task_file (again in '{path}')")
            tasks[name] = make_task(name, by_length, str(path))
    return list(tasks.values())


def describe(tasks: Sequence[Task]) -> dict[str, Any]:
    """What a checkpoint records about its file tasks: name -> trained lengths."""
    return {t.name: list(t.iid_lengths) for t in tasks}
