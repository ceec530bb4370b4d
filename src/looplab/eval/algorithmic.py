"""The algorithmic suite: answer accuracy per task and length, in and out of distribution.

A cell's problems come from `problems`, a function of the cell: the hub passes a fixed test set
(looplab.data.testsets.TestSet: the same problems for every run and seed, balanced over the answers
of parity, compare and dyck), training-time checks pass `drawn(samples, seed)`, fresh draws from
`cell_rng` (never from the test sets' seed). The greedy continuation of
`[bos] prompt [sep]` is read by looplab.eval.answers: a cell's `acc` is answer accuracy (the output up
to its stop is the target), `exact` the old exact match (the answer followed by EOS), beside
well-formedness, stop reasons and per-example `outcomes`. Each cell also records its floor, the share
of the most frequent answer among its own problems (looplab.data.floors.answer_floor), which reports
print beside its accuracy.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from looplab.data import testsets
from looplab.data.floors import answer_floor
from looplab.data.packing import encode_example
from looplab.data.tasks import Task, get_tasks
from looplab.errors import LooplabError
from looplab.eval.answers import Reading, Record, cell_summary, read_output
from looplab.eval.decode import at_once, greedy, rows_batch
from looplab.models.base import LoopedModel, loops_context

GRID_VERSION = "algorithmic-v2"  # v2: fixed test sets (data.testsets), balanced, floors on the set (v1: cell_rng(seed))
OOD_PROBES = {"parity": 32, "addition": 8}  # the seed's headline out-of-distribution cells


Cell = testsets.Cell  # (task, length, split)
Problems = Callable[[Cell], list[tuple[str, str]]]  # a cell -> its (prompt, target) pairs


def cell_rng(seed: int, task: str, length: int) -> np.random.Generator:
    """A generator that depends only on (seed, task, length): stable across runs and processes. The
    test sets' seed is refused: what draws here (periodic evaluation, probes) never sees a test problem."""
    if seed == testsets.TEST_SEED:
        raise LooplabError(f"seed {seed} is the test sets' seed (data.testsets.TEST_SEED); draw from another")
    return np.random.default_rng([seed, zlib.crc32(task.encode()), length])


def drawn(samples: int, seed: int) -> Problems:
    """`samples` fresh problems per cell from `cell_rng(seed, ...)`: training-time checks, not a test set."""
    return lambda cell: cell[0].generate(cell_rng(seed, cell[0].name, cell[1]), samples, cell[1]).texts()


def read_examples(model: nn.Module, tokenizer: Any, pairs: Sequence[tuple[str, str]], *,
                  max_new_tokens: int, batch_size: int = 64, use_cache: bool = True,
                  n_loops: int | None = None) -> list[Reading]:
    """Each example's greedy output read against its target (looplab.eval.answers); `n_loops` sets a
    looped model's loop count for the prefill and every decoding step alike (None: the trained count)."""
    contexts, answers = zip(*(encode_example(tokenizer, p, t) for p, t in pairs))
    # A cap below the longest answer (EOS included) would score long OOD answers as wrong by construction.
    cap = max(max_new_tokens, max(len(a) for a in answers))
    with loops_context(model, n_loops):
        if reads_at_once(model):  # as many slots as the target has tokens: the papers' setting
            outs = at_once(model, contexts, [len(a) for a in answers], slot_id=tokenizer.pad_id,
                           eos_id=tokenizer.eos_id, batch_size=batch_size)
        else:
            outs = greedy(model, contexts, max_new_tokens=cap, eos_id=tokenizer.eos_id,
                          batch_size=batch_size, use_cache=use_cache)
    return [read_output(o, a[:-1], tokenizer.eos_id) for o, a in zip(outs, answers)]


def reads_at_once(model: nn.Module) -> bool:
    """Whether the model was trained to give its answers at once (ModelConfig.answer_at_once)."""
    return bool(getattr(getattr(model, "cfg", None), "answer_at_once", False))


def score_examples(model: nn.Module, tokenizer: Any, pairs: Sequence[tuple[str, str]], *,
                   max_new_tokens: int, batch_size: int = 64, use_cache: bool = True,
                   n_loops: int | None = None) -> list[bool]:
    """Answer accuracy per example (`read_examples`, the answer read up to the output's stop)."""
    return [r.answer for r in read_examples(model, tokenizer, pairs, max_new_tokens=max_new_tokens,
                                            batch_size=batch_size, use_cache=use_cache, n_loops=n_loops)]


def evaluate_cells(model: nn.Module, tokenizer: Any, cells: Sequence[Cell], *,
                   problems: Problems, max_new_tokens: int, batch_size: int = 64,
                   use_cache: bool = True, n_loops: int | None = None,
                   keep_outputs: bool = False) -> dict[str, Any]:
    """Accuracy for each (task, length, split) cell, decoded in one batched pass per loop count: a
    model whose loops grow with the input (LoopedModel.length_policy) runs each cell at the count of
    its length unless `n_loops` is given, and the cell records the count it ran (`loops`).

    A cell holds `acc` (answer accuracy), `exact`, `n`, `split`, `floor` and the fields of
    `answers.cell_summary`; `floor` is the share of the most frequent target among the cell's problems. With `keep_outputs`, `outputs` lists every example as a JSON-ready dict
    (an `answers.Record`) for the caller to write beside the results (`answers.write_outputs`)."""
    counts = [cell_loops(model, length, n_loops) for _, length, _ in cells]
    pairs = [problems(cell) for cell in cells]
    readings: dict[int, list[Reading]] = {}
    for count in dict.fromkeys(counts):
        group = [i for i, c in enumerate(counts) if c == count]
        got = read_examples(model, tokenizer, [p for i in group for p in pairs[i]], max_new_tokens=max_new_tokens,
                            batch_size=batch_size, use_cache=use_cache, n_loops=count)
        for i in group:
            readings[i], got = got[: len(pairs[i])], got[len(pairs[i]):]
    tasks: dict[str, Any] = {}
    outputs: list[dict[str, Any]] = []
    for i, (task, length, split) in enumerate(cells):
        records = [Record(task=task.name, length=length, index=k, prompt=p, target=t,
                          output=tokenizer.decode(r.written), tokens=r.written, stop=r.stop, answer=r.answer,
                          well_formed=r.well_formed, exact=r.exact, loops=counts[i])
                   for k, ((p, t), r) in enumerate(zip(pairs[i], readings[i]))]
        outputs += [dataclasses.asdict(r) for r in records] if keep_outputs else []
        cell = {"n": len(records), "split": split, "floor": answer_floor([t for _, t in pairs[i]]),
                **cell_summary(records, readings[i])}
        if counts[i] is not None and n_loops is None:
            cell["loops"] = counts[i]
        tasks.setdefault(task.name, {"lengths": {}})["lengths"][str(length)] = cell
    return {"tasks": split_means(tasks), **_means(tasks), **({"outputs": outputs} if keep_outputs else {})}


def split_means(tasks: dict[str, Any]) -> dict[str, Any]:
    """Each task's `iid_acc` and `ood_acc`: the mean of its cells' `acc` (answer accuracy) of that
    split (None without any)."""
    for entry in tasks.values():
        for split in ("iid", "ood"):
            accs = [c["acc"] for c in entry["lengths"].values() if c["split"] == split]
            entry[f"{split}_acc"] = float(np.mean(accs)) if accs else None
    return tasks


def cell_loops(model: nn.Module, length: int, n_loops: int | None) -> int | None:
    """The loop count a cell of task length `length` runs: `n_loops` when given, else the model's
    length policy (None: the trained count)."""
    if n_loops is not None or not isinstance(model, LoopedModel):
        return n_loops
    return model.loops_for_length(length)


def _means(tasks: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for split in ("iid", "ood"):
        vals = [t[f"{split}_acc"] for t in tasks.values() if t[f"{split}_acc"] is not None]
        out[f"{split}_acc"] = float(np.mean(vals)) if vals else None
    return out


def grid_cells(task_names: Sequence[str | Task] | None) -> list[Cell]:
    """The full grid: every task's in-distribution and out-of-distribution lengths."""
    return testsets.grid_cells(get_tasks(task_names))


def first(problems: Problems, n: int) -> Problems:
    """The first `n` problems of each cell (all of them when n is 0): the subset a loop sweep scores."""
    return problems if n <= 0 else (lambda cell: problems(cell)[:n])


def run_grid(model: nn.Module, tokenizer: Any, task_names: Sequence[str | Task] | None, *, problems: Problems,
             max_new_tokens: int, batch_size: int = 64, use_cache: bool = True,
             n_loops: int | None = None, keep_outputs: bool = False) -> dict[str, Any]:
    return evaluate_cells(model, tokenizer, grid_cells(task_names), problems=problems,
                          max_new_tokens=max_new_tokens, batch_size=batch_size, use_cache=use_cache,
                          n_loops=n_loops, keep_outputs=keep_outputs)


def ood_summary(results: dict[str, Any]) -> dict[str, Any]:
    """What the report reads: per task an accuracy-vs-length curve and the OOD mean, and the seed's
    headline probes (parity at 32 bits, addition at 8 digits; None when not evaluated)."""
    tasks = results["tasks"]
    curves = {}
    for name, entry in tasks.items():
        lengths = sorted(entry["lengths"], key=int)
        curves[name] = {"lengths": [int(n) for n in lengths], "acc": [entry["lengths"][n]["acc"] for n in lengths],
                        "split": [entry["lengths"][n]["split"] for n in lengths]}
    probes = {f"{name}@{n}": tasks.get(name, {}).get("lengths", {}).get(str(n), {}).get("acc")
              for name, n in OOD_PROBES.items()}
    return {"curves": curves, "ood_summary": {"ood_acc": results["ood_acc"], "probes": probes,
                                              "by_task": {k: v["ood_acc"] for k, v in tasks.items()}}}


def halting_by_length(model: nn.Module, tokenizer: Any, task_names: Sequence[str | Task] | None, *,
                      problems: Problems) -> dict[str, dict[str, float]]:
    """For a model with adaptive halting (act): per task and length, the mean loop at which the
    position that starts the answer (the separator) halts, on the grid's own problems. Does its
    compute grow with the problem? {} for other models."""
    if not hasattr(model, "halting_depths"):
        return {}
    out: dict[str, dict[str, float]] = {}
    device = next(model.parameters()).device
    for cell in grid_cells(task_names):
        contexts = [encode_example(tokenizer, p, t)[0] for p, t in problems(cell)]
        depths = []
        for size in sorted({len(c) for c in contexts}):  # equal lengths batch together without padding
            idx = torch.tensor([c for c in contexts if len(c) == size], device=device)
            depths += model.halting_depths(rows_batch(model, idx))[:, -1].tolist()
        out.setdefault(cell[0].name, {})[str(cell[1])] = float(np.mean(depths))
    return out


def loop_sweep(model: nn.Module, tokenizer: Any, task_names: Sequence[str] | None, n_loops: Sequence[int],
               **grid: Any) -> dict[str, Any]:
    """Test-time compute: the same grid (same problems) at every loop count, keyed by the count.

    A model without a loop count is not an error here (a ladder may sweep every variant): its
    sweep is empty and `loops_note` says why."""
    if not isinstance(model, LoopedModel):
        return {"loops": {}, "loops_note": f"variant '{model.cfg.variant}' has no loop count; n_loops ignored"}
    return {"loops": {str(n): run_grid(model, tokenizer, task_names, n_loops=n, **grid) for n in n_loops},
            "trained_n_loops": model.n_loops}


def iid_accuracy(model: nn.Module, tokenizer: Any, task_names: Sequence[str | Task], *, samples: int, seed: int,
                 max_new_tokens: int) -> dict[str, float]:
    """Training-time check: per task, the mean answer accuracy over its in-distribution cells (the same
    cells and definition as the grid's `iid_acc`), `samples` fresh examples per cell from `cell_rng(seed)`
    (not the test sets), all decoded in one pass."""
    cells = [(task, n, "iid") for task in get_tasks(task_names) for n in task.iid_lengths]
    grid = evaluate_cells(model, tokenizer, cells, problems=drawn(samples, seed), max_new_tokens=max_new_tokens)
    return {name: entry["iid_acc"] for name, entry in grid["tasks"].items()}


def approximate_cache_speed(model: nn.Module, tokenizer: Any, task_names: Sequence[str | Task] | None, *,
                            problems: Problems, samples: int, max_new_tokens: int, batch_size: int = 64) -> dict[str, Any]:
    """A variant's approximate decoding cache (prc's recurrence budget) as a speed figure only: generated
    tokens per second with it and with the exact cache that scores, on the first `samples` prompts of
    each IID cell, and the share of examples on which both decode the same tokens."""
    pairs = [p for cell in grid_cells(task_names) if cell[2] == "iid" for p in problems(cell)[:samples]]
    contexts = [encode_example(tokenizer, p, t)[0] for p, t in pairs]
    runs = {}
    for exact in (True, False):
        t0 = time.perf_counter()
        outs = greedy(model, contexts, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id,
                      batch_size=batch_size, exact=exact)
        runs[exact] = (outs, sum(len(o) for o in outs) / (time.perf_counter() - t0))
    same = np.mean([a == b for a, b in zip(runs[True][0], runs[False][0])])
    return {"exact_tokens_per_s": runs[True][1], "approximate_tokens_per_s": runs[False][1],
            "speedup": runs[False][1] / runs[True][1], "same_output": float(same), "examples": len(pairs)}
