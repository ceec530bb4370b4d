"""Exit criteria at test time for looped variants: how many loops to run, decided per input.

- `fixed`: the count the model runs anyway (its trained count, or its length policy's count); this
  is the main grid, and the loop sweep gives the other fixed counts.
- `convergence`: the first loop k >= 2 whose next-token distribution differs from loop k-1's by
  less than `threshold` in KL divergence, KL(p_k || p_{k-1}) (recurrent-depth models stop when
  successive states stop changing; Huginn, arXiv 2502.05171, thresholds the KL between steps).
- `confidence`: the loop whose most likely next token is the most probable (Fan et al., arXiv
  2409.15647, pick the stopping step by confidence).

The decision is taken once per example, on the distribution at the position that starts the answer
(the separator), for loops 1..max_loops; the whole answer is then decoded at the chosen count (one
count per decoding run keeps cached decoding exact). max_loops per cell is twice the count the model
would run on it. The grid records per cell the accuracy and the mean loop count chosen.

Letters: B prompts, T tokens, V vocabulary, K loop counts tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from looplab.data.floors import answer_floor
from looplab.data.packing import encode_example
from looplab.errors import LooplabError
from looplab.eval.algorithmic import Problems, cell_loops, grid_cells, score_examples, split_means
from looplab.eval.decode import rows_batch
from looplab.models.base import LoopedModel


def converged(logp: torch.Tensor, threshold: float) -> torch.Tensor:
    """logp (K, B, V) log-probabilities at loops 1..K -> the chosen count (B,): first k >= 2 with
    KL(p_k || p_{k-1}) < threshold, else K."""
    kl = (logp[1:].exp() * (logp[1:] - logp[:-1])).sum(-1)  # (K-1, B), kl[i] between loops i+2 and i+1
    if not len(kl):
        return torch.ones(logp.shape[1], dtype=torch.long)
    below = torch.cat([kl < threshold, torch.ones_like(kl[:1], dtype=torch.bool)])  # the last row: never below
    return (below.int().argmax(0) + 2).clamp(max=logp.shape[0])


def most_confident(logp: torch.Tensor, threshold: float) -> torch.Tensor:
    """logp (K, B, V) -> the count (B,) whose top next-token probability is highest (the first on ties)."""
    return logp.max(-1).values.argmax(0) + 1


EXITS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {"convergence": converged,
                                                                    "confidence": most_confident}


@torch.no_grad()
def loop_logprobs(model: LoopedModel, contexts: Sequence[list[int]], max_loops: int) -> torch.Tensor:
    """(K, B, V) log-probabilities of the token after each context at loops 1..max_loops (contexts of
    one length batch together, so nothing is padded), with the position or digit ids the model's
    `position_ids` asks for, computed from the contexts as decoding computes them."""
    device = next(model.parameters()).device
    out = torch.empty(max_loops, len(contexts), model.cfg.vocab_size)
    for size in sorted({len(c) for c in contexts}):
        rows = [i for i, c in enumerate(contexts) if len(c) == size]
        idx = torch.tensor([contexts[i] for i in rows], device=device)
        for k, logits in enumerate(model.logits_per_loop(rows_batch(model, idx), max_loops)):
            out[k, rows] = logits[:, -1].float().log_softmax(-1).cpu()
    return out


def choose_loops(model: LoopedModel, contexts: Sequence[list[int]], criterion: str, max_loops: int,
                 threshold: float) -> list[int]:
    if criterion not in EXITS:
        raise LooplabError(f"unknown exit criterion '{criterion}'; allowed: {', '.join(EXITS)}")
    return EXITS[criterion](loop_logprobs(model, contexts, max_loops), threshold).tolist()


def exit_grid(model: nn.Module, tokenizer: Any, task_names: Sequence[str] | None, criterion: str, *,
              threshold: float, problems: Problems, max_new_tokens: int, batch_size: int = 64,
              use_cache: bool = True) -> dict[str, Any]:
    """The grid's cells (their `problems`, the main grid's) scored with each example's loop count chosen by
    `criterion`."""
    if not isinstance(model, LoopedModel):
        raise LooplabError(f"variant '{model.cfg.variant}' has no loop count; exit criteria apply to looped variants")
    tasks: dict[str, Any] = {}
    for cell in grid_cells(task_names):
        task, length, split = cell
        pairs = problems(cell)
        contexts = [encode_example(tokenizer, p, t)[0] for p, t in pairs]
        cap = 2 * (cell_loops(model, length, None) or model.n_loops)
        chosen = choose_loops(model, contexts, criterion, cap, threshold)
        correct: list[bool] = [False] * len(pairs)
        for n in sorted(set(chosen)):
            rows = [i for i, c in enumerate(chosen) if c == n]
            scores = score_examples(model, tokenizer, [pairs[i] for i in rows], max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, use_cache=use_cache, n_loops=n)
            for i, ok in zip(rows, scores):
                correct[i] = ok
        entry = tasks.setdefault(task.name, {"lengths": {}})
        entry["lengths"][str(length)] = {"acc": float(np.mean(correct)), "n": len(pairs), "split": split,
                                         "floor": answer_floor([t for _, t in pairs]), "mean_loops": float(np.mean(chosen)),
                                         "max_loops": cap}
    return {"criterion": criterion, "threshold": threshold, "tasks": split_means(tasks)}
