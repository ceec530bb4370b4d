"""Data generation speed: packed training tokens per second on one core, all ten tasks.

The issue's floor is 1M tokens/s; the per-task lines show which generator costs most.
"""

from __future__ import annotations

import time

import common  # noqa: F401  (import path)
import numpy as np
import torch
from common import figure

from looplab.data.packing import AlgoStream
from looplab.data.tasks import TASKS
from looplab.data.tokenizer import ByteTokenizer


def rate(fn, seconds: float = 1.0) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    stream = AlgoStream(ByteTokenizer(), list(TASKS), seq_len=256, batch_size=32, seed=0)
    tps = rate(lambda: stream.next_batch()[0].numel(), seconds=3.0)
    for name, task in TASKS.items():
        rng = np.random.default_rng(0)
        lo, hi = task.train_lengths

        def gen(task=task, rng=rng, lo=lo, hi=hi) -> int:
            ex = task.generate(rng, 4096, int(rng.integers(lo, hi + 1)))
            return int((ex.prompt_len + ex.target_len + 3).sum())

        print(f"  generate {name}: {rate(gen, 0.3):,.0f} tokens/s")
    figure("data_tokens_per_s", tps, ">=", 1_000_000)


if __name__ == "__main__":
    main()
