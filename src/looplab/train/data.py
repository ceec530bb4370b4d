"""A run's training data behind one interface: batches, their resumable position, and the accuracy
its evaluations report.

`TaskData` is the default: the algorithmic tasks (and task files) packed by `AlgoStream`, scored
by answer accuracy (looplab.eval.answers) on each in-distribution (task, length) cell, plus `val_batches`, fresh
batches from the training distribution (a fixed seed, the same for every run) whose loss the
trainer reports. Every batch is a `looplab.data.batch.Batch`, per-row facts included. A variant with
its own stream (`ModelSpec.train_data`: rlf's pointer chains) provides the same methods.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from looplab.config import ModelConfig, TrainConfig
from looplab.data.batch import Batch
from looplab.data.digit_ids import coupled_base
from looplab.data.packing import AlgoStream
from looplab.data.tasks import Task
from looplab.errors import LooplabError
from looplab.eval.algorithmic import cell_rng, drawn, evaluate_cells, run_grid, score_examples
from looplab.models import get_spec

ALG_VAL_BATCHES = 8  # fresh algorithmic batches (training distribution) scored at every evaluation
ALG_VAL_SEED = 1_000_003  # their stream's seed: the same batches for every run, apart from any training seed


class TrainData(Protocol):
    val_batches: list[Batch]  # held-out batches of the training distribution

    def next_batch(self) -> Batch: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def cell_accuracy(self, model: torch.nn.Module, *, samples: int, seed: int) -> dict[str, dict[str, float]]: ...
    def final_eval(self, model: torch.nn.Module, *, samples: int, seed: int) -> dict[str, Any]: ...


class TaskData:
    """The algorithmic tasks: packed batches, IID answer accuracy per task, and the full IID/OOD grid."""

    def __init__(self, tokenizer: Any, tasks: list[Task], cfg: TrainConfig, model_cfg: ModelConfig | None = None
                 ) -> None:
        self.tokenizer, self.tasks, self.max_new_tokens = tokenizer, tasks, cfg.eval_max_new_tokens
        m = model_cfg or ModelConfig()  # how the model reads answers and positions from the data
        if m.position_ids != "plain" and not tokenizer.is_byte_level:
            raise LooplabError(f"position_ids {m.position_ids} reads digits as byte tokens; tokenizer "
                               f"{tokenizer.name} is not byte-level (use the byte tokenizer, or position_ids plain)")
        kw = dict(seq_len=cfg.seq_len, batch_size=cfg.batch_size, loss_on=cfg.loss_on, packing=cfg.packing,
                  at_once=m.answer_at_once, position_ids=m.position_ids, position_offset=m.position_offset,
                  coupled_base=coupled_base(m.max_seq_len))
        self.stream = AlgoStream(tokenizer, tasks, seed=cfg.seed, **kw)
        val = AlgoStream(tokenizer, tasks, seed=ALG_VAL_SEED, **kw)
        self.val_batches = [val.next_batch() for _ in range(ALG_VAL_BATCHES)]

    def next_batch(self) -> Batch:
        return self.stream.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

    def cell_accuracy(self, model: torch.nn.Module, *, samples: int, seed: int) -> dict[str, dict[str, float]]:
        """Answer accuracy of every IID cell, task -> length -> accuracy, all decoded in one pass (the
        cells `iid_accuracy` averages per task)."""
        cells = [(task, n, "iid") for task in self.tasks for n in task.iid_lengths]
        grid = evaluate_cells(model, self.tokenizer, cells, problems=drawn(samples, seed),
                              max_new_tokens=self.max_new_tokens)
        return {name: {k: c["acc"] for k, c in entry["lengths"].items()} for name, entry in grid["tasks"].items()}

    def final_eval(self, model: torch.nn.Module, *, samples: int, seed: int) -> dict[str, Any]:
        return run_grid(model, self.tokenizer, self.tasks, problems=drawn(samples, seed),
                        max_new_tokens=self.max_new_tokens)


def make_train_data(model: torch.nn.Module, tokenizer: Any, tasks: list[Task], cfg: TrainConfig) -> TrainData:
    """The variant's own stream when it has one, else the algorithmic tasks."""
    own = get_spec(model.cfg.variant).train_data
    if own is not None:
        return own(model, tokenizer, cfg)
    return TaskData(tokenizer, tasks, cfg, model.cfg)


@torch.no_grad()
def probe_accuracy(model: torch.nn.Module, tokenizer: Any, tasks: dict[str, Task], lengths: dict[str, int], *,
                   samples: int, seed: int, max_new_tokens: int) -> dict[str, float]:
    """Answer accuracy per task at exactly the given length: the curriculum's competence signal."""
    pairs = {n: tasks[n].generate(cell_rng(seed, n, k), samples, k).texts() for n, k in lengths.items()}
    flat = [p for ps in pairs.values() for p in ps]
    if not flat:
        return {}
    model.eval()
    correct = score_examples(model, tokenizer, flat, max_new_tokens=max_new_tokens)
    out, i = {}, 0
    for name, ps in pairs.items():
        out[name] = sum(correct[i : i + len(ps)]) / len(ps)
        i += len(ps)
    return out


def task_means(cells: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each task's mean over its cells (the per-task figure the metrics and plots show)."""
    return {name: sum(accs.values()) / len(accs) for name, accs in cells.items()}


def cells_below(cells: dict[str, dict[str, float]], threshold: float) -> list[str]:
    """The cells (`task/length`) under `threshold`: competence needs this to be empty, not the mean above it."""
    return [f"{name}/{k}" for name, accs in cells.items() for k, a in accs.items() if a < threshold]
