"""rlf's pointer-chain training stream and its scoring (the trainer's hook and the probe's figures).

`training_data` is `MODELS["rlf"].train_data`: the chain stream plus hop accuracies for the trainer's
evaluations. `hop_accuracy` runs the model's loops over evaluation chains and scores them: `acc`
(the last prediction before the first HALT is the value), `trace_acc` (every pointer right and
HALT at exactly loop hops + 1), and the halting figures.
"""

from __future__ import annotations

from typing import Any

import torch

from looplab.data.batch import Batch
from looplab.data.pointer_chains import (
    IID_HOPS,
    OOD_HOPS,
    ChainCodec,
    ChainStream,
    digit_guess_chance,
    eval_set,
)
from looplab.models.rlf import RLF, Trace

BATCH = 256


def training_data(model: RLF, tokenizer: Any, cfg: Any) -> ChainTraining:
    """The trainer's hook (ModelSpec.train_data): pointer-chain batches and hop accuracies."""
    return ChainTraining(model, tokenizer, batch_size=cfg.batch_size, seed=cfg.seed)


class ChainTraining(ChainStream):
    """The trainer's hook for rlf: the chain stream plus hop accuracies for its evaluations."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int, seed: int) -> None:
        super().__init__(ChainCodec(tokenizer, model.halt_id, model.uses_specials), batch_size=batch_size, seed=seed)
        self.val_batches: list[Batch] = []  # no held-out loss: hop accuracy is the figure

    def cell_accuracy(self, model: Any, *, samples: int, seed: int) -> dict[str, dict[str, float]]:
        """Each IID hop count is a task of one cell."""
        res = hop_accuracy(model, self.codec, IID_HOPS, samples, seed)
        return {f"hops{h}": {str(h): r["acc"]} for h, r in res.items()}

    def final_eval(self, model: Any, *, samples: int, seed: int) -> dict[str, Any]:
        res = hop_accuracy(model, self.codec, IID_HOPS + OOD_HOPS, max(samples, 200), seed)
        return {"iid_acc": average([res[h]["acc"] for h in IID_HOPS]),
                "ood_acc": average([res[h]["acc"] for h in OOD_HOPS]), "hops": {str(h): r for h, r in res.items()}}


def average(values: list[float]) -> float:
    return sum(values) / len(values)


@torch.no_grad()
def run(model: Any, idx: torch.Tensor, n_loops: int, *, lifeline: str = "intact", stop_on_halt: bool = True,
        seed: int = 0) -> Any:
    """model.think over batches of BATCH rows, traces concatenated (loops padded with HALT)."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = [model.think(idx[i : i + BATCH].to(device), n_loops, lifeline=lifeline, stop_on_halt=stop_on_halt,
                         generator=gen) for i in range(0, len(idx), BATCH)]
    L = max(p.preds.shape[1] for p in parts)

    def pad(t: torch.Tensor, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, L - t.shape[1]), value=value)

    return Trace(logits=torch.cat([pad(p.logits, 0.0) for p in parts]).cpu(),
                 preds=torch.cat([pad(p.preds, model.halt_id) for p in parts]).cpu(),
                 halted_at=torch.cat([p.halted_at for p in parts]).cpu(),
                 states=torch.cat([pad(p.states, 0.0) for p in parts]).cpu())


def score(trace: Any, targets: torch.Tensor, hops: int) -> dict[str, Any]:
    """Accuracy, trace accuracy and halting figures of one hop count (see the module docstring)."""
    n, L = trace.preds.shape
    halted = trace.halted_at
    last = torch.where(halted > 0, halted - 2, torch.full_like(halted, L - 1))  # loop before the first HALT
    answer = trace.preds.gather(1, last.clamp(min=0)[:, None])[:, 0]
    acc = (answer == targets[:, hops - 1]) & (last >= 0)
    width = min(L, hops)
    steps_ok = (trace.preds[:, :width] == targets[:, :width]).all(1) & (L >= hops)
    exact = halted == hops + 1
    return {"n": n, "acc": float(acc.float().mean()), "trace_acc": float((steps_ok & exact).float().mean()),
            "halt_exact": float(exact.float().mean()), "halt_at_1": float((halted == 1).float().mean()),
            "no_halt": float((halted == 0).float().mean()), "mean_halt_loop": float(halted[halted > 0].float().mean())
            if bool((halted > 0).any()) else 0.0}


def cap(model: Any, hops: int) -> int:
    return max(model.opts.max_loops, hops + 1)


def hop_accuracy(model: Any, codec: ChainCodec, hops: tuple[int, ...], samples: int, seed: int,
                 lifeline: str = "intact") -> dict[int, dict[str, Any]]:
    out = {}
    for h in hops:
        ch = eval_set(h, samples, seed)
        out[h] = score(run(model, codec.inputs(ch), cap(model, h), lifeline=lifeline, seed=seed),
                       codec.targets(ch), h) | {"digit_guess_chance": digit_guess_chance(ch)}
    return out
