"""Test sets: one fixed set of problems per (task, length), shared by every run and seed.

Runs are compared across variants and seeds, so each is scored on the very same problems. A cell's
set comes from a generator seeded by TEST_SEED and the cell alone (`testset_rng`), never by a run's
seed: training streams (`default_rng(seed)`), the validation stream (ALG_VAL_SEED) and periodic
evaluations (`cell_rng(seed, ...)`, which refuses TEST_SEED) draw from other generators. A task with
few possible answers (`Task.answers`: parity, compare, dyck) gets exactly as many problems of each
answer, stratified by rejection (each answer's draws past its quota are dropped, the rest kept in
drawing order), so the floor of such a cell, the share of its most frequent answer, is 1/k exactly.

A cell's canonical content is its JSONL text, one `{"task", "length", "prompt", "target"}` per line
(the `--task_file` format), and its digest the sha256 of that text; the set's digest hashes the
cells' digests. A ladder writes every cell once (`write_test_sets`: `<task>_<length>.jsonl` and
DIGESTS.json) before any run is scored, and the hub reads those files (`EvalConfig.test_sets`) or,
without them, generates the same sets in memory (`TestSet`). Results record each cell's digest and
size and the set's digest, so a report can check that all runs shared one set.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from looplab.data.tasks import Task
from looplab.errors import LooplabError
from looplab.io import atomic_write_bytes, write_json

TEST_SEED = 271_828_183  # the test sets' seed, used with a tag of their own: no run's generators share it
TEST_TAG = zlib.crc32(b"looplab-test-set")
DIGESTS = "DIGESTS.json"  # beside the cells: {"seed", "samples", "ood_samples", "cells": {name: digest}, "digest"}
Cell = tuple[Task, int, str]  # (task, length, split: "iid" or "ood")
Pairs = list[tuple[str, str]]


def testset_rng(task: str, length: int) -> np.random.Generator:
    """The generator of the test cell (task, length): it depends on nothing else."""
    return np.random.default_rng([TEST_SEED, TEST_TAG, zlib.crc32(task.encode()), length])


def cell_name(task: str, length: int) -> str:
    return f"{task}_{length}"


def cell_size(task: Task, n: int) -> int:
    """Problems in a cell asked for `n`: n, rounded up to a multiple of the answer count when balanced."""
    k = len(task.answers)
    return -(-n // k) * k if k else n


def generate_cell(task: Task, length: int, n: int) -> Pairs:
    """The test cell's problems: `cell_size(task, n)` of them, balanced over `task.answers` when it has any."""
    rng = testset_rng(task.name, length)
    if not task.answers:
        return task.generate(rng, n, length).texts()
    return balanced(task, rng, n, length)


def balanced(task: Task, rng: np.random.Generator, n: int, length: int) -> Pairs:
    """Draw batches until each answer has n / k problems (rounded up), keeping the first ones of each
    answer in drawing order; a target outside `task.answers` is an error (a generator bug)."""
    k = len(task.answers)
    quota = np.full(k, -(-n // k))
    kept: Pairs = []
    while quota.any():
        ex = task.generate(rng, max(64, 2 * int(quota.sum())), length)
        which = np.full(len(ex), -1)
        for i, answer in enumerate(task.answers):
            a = np.frombuffer(answer.encode("ascii"), dtype=np.uint8)
            hit = (ex.target_len == len(a)) & (ex.target[:, : len(a)] == a).all(axis=1)
            which[hit] = i
        if (which < 0).any():
            raise LooplabError(f"task {task.name}: a target outside its answers {task.answers}")
        onehot = which[:, None] == np.arange(k)  # (n, k)
        rank = (np.cumsum(onehot, axis=0) - 1)[np.arange(len(ex)), which]  # each row's place among its answer
        keep = rank < quota[which]
        texts = ex.texts()
        kept += [texts[i] for i in np.flatnonzero(keep)]
        quota -= np.bincount(which[keep], minlength=k)
    return kept


def cell_text(task: str, length: int, pairs: Sequence[tuple[str, str]]) -> bytes:
    """The cell's canonical content: its JSONL text."""
    lines = [json.dumps({"task": task, "length": length, "prompt": p, "target": t}) for p, t in pairs]
    return "".join(line + "\n" for line in lines).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_digest(cells: Mapping[str, str]) -> str:
    """The digest of a whole set: sha256 of its cells' digests by name (sorted, compact JSON)."""
    return sha256(json.dumps(dict(sorted(cells.items())), separators=(",", ":")).encode())


def read_cell(path: Path) -> Pairs:
    return [(r["prompt"], r["target"]) for r in map(json.loads, path.read_text().splitlines()) if r]


class TestSet:
    """The problems of each cell, `samples` per IID cell and `ood_samples` per OOD cell (balanced cells
    rounded up), read from `directory` (checked against its DIGESTS.json) or generated when it is
    empty. Called with a cell it returns the cell's (prompt, target) pairs; `record()` lists what was
    served, with digests."""

    __test__ = False  # not a pytest class

    def __init__(self, samples: int, ood_samples: int, directory: str | Path = "") -> None:
        self.samples, self.ood_samples = samples, ood_samples
        self.directory = Path(directory) if directory else None
        self.expected = load_digests(self.directory)["cells"] if self.directory else {}
        self.cells: dict[str, Pairs] = {}
        self.digests: dict[str, str] = {}

    def __call__(self, cell: Cell) -> Pairs:
        task, length, split = cell
        name = cell_name(task.name, length)
        if name not in self.cells:
            want = cell_size(task, self.samples if split == "iid" else self.ood_samples)
            pairs = self._read(self.directory, name, want, split) if self.directory else generate_cell(task, length, want)
            self.cells[name], self.digests[name] = pairs, sha256(cell_text(task.name, length, pairs))
        return self.cells[name]

    def _read(self, directory: Path, name: str, want: int, split: str) -> Pairs:
        path = directory / f"{name}.jsonl"
        if name not in self.expected or not path.exists():
            raise LooplabError(f"test set {directory} has no cell {name}; it was written for "
                               f"{', '.join(self.expected) or 'no cells'}")
        if sha256(path.read_bytes()) != self.expected[name]:
            raise LooplabError(f"test set file {path} does not match its digest in {DIGESTS}")
        pairs = read_cell(path)
        if len(pairs) != want:
            flag = "--samples" if split == "iid" else "--ood_samples"
            raise LooplabError(f"test set file {path} holds {len(pairs)} problems; this evaluation asks for {want} "
                               f"({flag})")
        return pairs

    def record(self) -> dict[str, Any]:
        """What a results file keeps: the seed, where the problems came from, per cell its digest and
        size, and the digest of the cells served."""
        return {"seed": TEST_SEED, "source": str(self.directory) if self.directory else "generated",
                "samples": self.samples, "ood_samples": self.ood_samples,
                "cells": {n: {"digest": d, "n": len(self.cells[n])} for n, d in sorted(self.digests.items())},
                "digest": set_digest(self.digests)}


def grid_cells(tasks: Sequence[Task]) -> list[Cell]:
    return [(t, n, split) for t in tasks for split, lengths in (("iid", t.iid_lengths), ("ood", t.ood_lengths))
            for n in lengths]


def write_test_sets(directory: str | Path, tasks: Sequence[Task], *, samples: int, ood_samples: int) -> dict[str, Any]:
    """Write every cell of `tasks` once, then DIGESTS.json (last: its presence means the set is whole).
    A directory already holding the same set is left as it is; one holding another is refused."""
    directory = Path(directory)
    served = TestSet(samples, ood_samples)
    for cell in grid_cells(tasks):
        served(cell)
    doc = {"seed": TEST_SEED, "samples": samples, "ood_samples": ood_samples,
           "cells": dict(sorted(served.digests.items())), "digest": set_digest(served.digests)}
    if (directory / DIGESTS).exists():
        if load_digests(directory) != doc:
            raise LooplabError(f"{directory} holds another test set (other tasks or sizes); use another --out or "
                               "remove it")
        return doc
    directory.mkdir(parents=True, exist_ok=True)
    for task, length, _ in grid_cells(tasks):
        name = cell_name(task.name, length)
        atomic_write_bytes(directory / f"{name}.jsonl", cell_text(task.name, length, served.cells[name]))
    write_json(directory / DIGESTS, doc)
    return doc


def load_digests(directory: Path) -> dict[str, Any]:
    path = directory / DIGESTS
    if not path.exists():
        raise LooplabError(f"--test_sets {directory} has no {DIGESTS} (a ladder writes it before scoring)")
    return json.loads(path.read_text())
