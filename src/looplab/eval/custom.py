"""The custom suite: score a checkpoint on task files (`--data PATH`, JSONL task records).

Each record's `[bos] prompt [sep]` is decoded greedily (batched, cached: eval/decode.py) and
compared with `target [eos]`: exact match, and per-token accuracy (the share of answer positions,
EOS included, where the output holds the answer's token). Records are grouped by task and length;
the first `samples` records of each cell, in file order, are scored, so runs are comparable. A
length is `iid` when the checkpoint trained on that task at that length, else `ood`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from looplab.checkpoint import Checkpoint
from looplab.config import EvalConfig
from looplab.data.packing import encode_example
from looplab.data.task_file import group_records, read_records
from looplab.errors import LooplabError
from looplab.eval.algorithmic import reads_at_once
from looplab.eval.decode import at_once, greedy


def token_accuracy(output: list[int], answer: list[int]) -> float:
    return sum(o == a for o, a in zip(output, answer)) / len(answer)


def suite_custom(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    if not cfg.data:
        raise LooplabError("--suite custom needs at least one --data PATH (a JSONL task file)")
    trained = ckpt.meta.get("custom_tasks", {})
    cells, pairs = [], []  # (task, length, start, end) and (prompt, target)
    for path in cfg.data:
        for task, by_length in group_records(read_records(path)).items():
            if cfg.tasks and task not in cfg.tasks:
                continue
            for length, records in by_length.items():
                chosen = records[: cfg.samples]
                cells.append((task, length, len(pairs), len(pairs) + len(chosen)))
                pairs.extend(chosen)
    if not pairs:
        raise LooplabError(f"no records of tasks {', '.join(cfg.tasks)} in {', '.join(cfg.data)}")
    contexts, answers = zip(*(encode_example(ckpt.tokenizer, p, t) for p, t in pairs))
    cap = max(cfg.max_new_tokens, max(len(a) for a in answers))  # long answers are never cut off
    if reads_at_once(ckpt.model):  # a model trained on answer slots is read from them, as the grid reads it
        outputs = at_once(ckpt.model, contexts, [len(a) for a in answers], slot_id=ckpt.tokenizer.pad_id,
                          eos_id=ckpt.tokenizer.eos_id, batch_size=cfg.batch_size)
    else:
        outputs = greedy(ckpt.model, contexts, max_new_tokens=cap, eos_id=ckpt.tokenizer.eos_id,
                         batch_size=cfg.batch_size, use_cache=cfg.use_cache)
    exact = [list(o) == list(a) for o, a in zip(outputs, answers)]
    per_token = [token_accuracy(list(o), list(a)) for o, a in zip(outputs, answers)]
    tasks: dict[str, Any] = {}
    for task, length, a, b in cells:
        entry = tasks.setdefault(task, {"lengths": {}})
        split = "iid" if length in trained.get(task, ()) else "ood"
        entry["lengths"][str(length)] = {"exact_match": float(np.mean(exact[a:b])),
                                         "token_acc": float(np.mean(per_token[a:b])), "n": b - a, "split": split}
    for entry in tasks.values():
        cells_of = entry["lengths"].values()
        entry["exact_match"] = float(np.mean([c["exact_match"] for c in cells_of]))
        entry["token_acc"] = float(np.mean([c["token_acc"] for c in cells_of]))
        for split in ("iid", "ood"):
            accs = [c["exact_match"] for c in cells_of if c["split"] == split]
            entry[f"{split}_acc"] = float(np.mean(accs)) if accs else None
    means = {}
    for split in ("iid", "ood"):
        vals = [t[f"{split}_acc"] for t in tasks.values() if t[f"{split}_acc"] is not None]
        means[f"{split}_acc"] = float(np.mean(vals)) if vals else None
    return {"files": list(cfg.data), "tasks": tasks, **means,
            "exact_match": float(np.mean([t["exact_match"] for t in tasks.values()])),
            "token_acc": float(np.mean([t["token_acc"] for t in tasks.values()]))}
