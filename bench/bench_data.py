"""Data speed on one core: packed training tokens per second over all ten tasks, byte tokenizer.

The floor is 1M tokens/s (a small model on a GPU must never wait for data); the per-task lines show
which generator costs most. Run as `python bench/bench_data.py`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from looplab.data.packing import AlgoStream  # noqa: E402
from looplab.data.tasks import TASKS  # noqa: E402
from looplab.data.tokenizer import ByteTokenizer  # noqa: E402

TARGET = 1_000_000


def rate(step: Callable[[], int], seconds: float) -> float:
    """Units per second of `step` (which returns the units it produced), after one warm-up call."""
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    for name, task in TASKS.items():
        rng = np.random.default_rng(0)
        lo, hi = task.train_lengths

        def generate(task=task, rng=rng, lo=lo, hi=hi) -> int:
            ex = task.generate(rng, 4096, int(rng.integers(lo, hi + 1)))
            return int((ex.prompt_len + ex.target_len + 3).sum())  # tokens with bos, sep, eos

        print(f"generate {name}: {rate(generate, 0.3):,.0f} tokens/s", flush=True)
    stream = AlgoStream(ByteTokenizer(), list(TASKS), seq_len=256, batch_size=32, seed=0)
    for _ in range(2 * stream.block_batches):  # warm up: two whole blocks
        stream.next_batch()
    tps = rate(lambda: stream.next_batch().tokens.numel(), seconds=3.0)
    print(f"data_tokens_per_s: {tps:.0f} (target >= {TARGET}) {'PASS' if tps >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
