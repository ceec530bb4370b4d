"""Training throughput on the CPU against references measured in the same process.

1. `baseline` against a `transformers` LlamaForCausalLM of the same shape and weights (same batch,
   same AdamW), at `tiny` and `micro`: target >= 1.2x the tokens/s.
2. Every looped variant's step time over the baseline's, divided by its training-FLOPs ratio
   (`model.cost`): the overhead beyond what the extra arithmetic explains, target <= 1.15.
3. The data pipeline (generate, tokenize, pack) against the `micro` training step's token
   consumption: target >= 5x ahead.
4. `torch.compile` on the CPU: the eager tiny baseline step's speed over the compiled one's. The
   trainer leaves compile off by default on the CPU; this figure fails when compiling would be faster.

Steps are timed in interleaved rounds (best of each), so a burst of load cannot favour one side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import common  # noqa: F401  (import path)
import torch
from bench_variants import interleaved
from common import figure

from looplab.data.packing import AlgoStream
from looplab.data.tasks import get_tasks
from looplab.data.tokenizer import ByteTokenizer
from looplab.eval.hf_twin import llama_twin
from looplab.models import MODELS, create_model

V, SEQ_LEN = 260, 256
BATCH = {"tiny": 16, "micro": 8}


def step_fn(model: torch.nn.Module, batch: int, hf: bool, **adamw: Any) -> Callable[[], None]:
    """One training step on a fixed random batch; `adamw` picks AdamW's implementation (foreach, fused)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **adamw)
    x = torch.randint(0, 256, (batch, SEQ_LEN + 1))

    def step() -> None:
        if hf:
            logits = model(input_ids=x[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        else:
            loss = model(x[:, :-1], x[:, 1:]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def against_llama(size: str) -> float:
    torch.manual_seed(0)
    ours = create_model("baseline", size, V)
    theirs = llama_twin(ours)
    b = BATCH[size]
    t = interleaved({"looplab": step_fn(ours, b, hf=False), "transformers": step_fn(theirs, b, hf=True)})
    tok = b * SEQ_LEN
    print(f"{size}: looplab {tok / t['looplab']:,.0f} tok/s, transformers Llama {tok / t['transformers']:,.0f} tok/s")
    return t["transformers"] / t["looplab"]


def looped_overheads() -> dict[str, float]:
    """(step time ratio) / (FLOPs ratio) for every looped variant at tiny against baseline."""
    torch.manual_seed(0)
    models = {v: create_model(v, "tiny", V) for v in ["baseline"] + [v for v, s in MODELS.items() if s.looped]}
    flops = {v: m.cost(SEQ_LEN)["flops_per_token"] for v, m in models.items()}
    times = interleaved({v: step_fn(m, BATCH["tiny"], hf=False) for v, m in models.items()}, rounds=3)
    out = {}
    for v in models:
        if v == "baseline":
            continue
        t_ratio, f_ratio = times[v] / times["baseline"], flops[v] / flops["baseline"]
        print(f"{v}: step {t_ratio:.2f}x baseline, FLOPs {f_ratio:.2f}x")
        out[v] = t_ratio / f_ratio
    return out


def data_lead() -> float:
    """Tokens/s the data stream produces over tokens/s a micro training step consumes."""
    stream = AlgoStream(ByteTokenizer(), get_tasks(None), seq_len=SEQ_LEN, batch_size=BATCH["micro"], seed=0)
    stream.next_batch()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        n += stream.next_batch().tokens.numel()
    data_rate = n / (time.perf_counter() - t0)
    torch.manual_seed(0)
    step = step_fn(create_model("baseline", "micro", V), BATCH["micro"], hf=False)
    train_rate = BATCH["micro"] * SEQ_LEN / interleaved({"micro": step}, rounds=3)["micro"]
    print(f"data {data_rate:,.0f} tok/s, micro training {train_rate:,.0f} tok/s")
    return data_rate / train_rate


def eager_over_compiled() -> float:
    """Compiled step time over eager step time, tiny baseline (>= 1: eager is at least as fast)."""
    steps = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = create_model("baseline", "tiny", V)
        steps[name] = step_fn(torch.compile(model) if name == "compiled" else model, BATCH["tiny"], hf=False)
    t0 = time.perf_counter()
    steps["compiled"]()  # compiles forward and backward
    print(f"torch.compile: first compiled step {time.perf_counter() - t0:.1f} s")
    t = interleaved(steps)
    tok = BATCH["tiny"] * SEQ_LEN
    print(f"tiny: eager {tok / t['eager']:,.0f} tok/s, compiled {tok / t['compiled']:,.0f} tok/s")
    return t["compiled"] / t["eager"]


def main() -> None:
    torch.set_num_threads(2)
    for size in ("tiny", "micro"):
        figure(f"baseline_vs_transformers_llama_train_tok_s_{size}", against_llama(size), ">=", 1.2, "x")
    for variant, overhead in looped_overheads().items():
        figure(f"{variant}_step_time_over_flops_ratio_tiny", overhead, "<=", 1.15, "x")
    figure("data_lead_over_micro_training", data_lead(), ">=", 5.0, "x")
    figure("cpu_eager_over_compiled_speed_tiny", eager_over_compiled(), ">=", 1.0, "x")


if __name__ == "__main__":
    main()
