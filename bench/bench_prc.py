"""Training cost of `prc` against a baseline of the same effective depth, in one process.

`prc` (P, R, C) = (2, 4, 2) at r = 4 runs 2 + 4 * 4 + 2 = 20 blocks per token, so the reference is a
20-layer baseline at the same width (tiny, d_model 112). Optimiser steps (forward, backward, AdamW),
batch 16 x seq_len 256, the same random batch for both, timed in interleaved rounds (best of each)
with bench_variants' helpers. Target: prc's training time per token at r = 4 (the mean of its
training distribution, all four recurrences inside bptt_k) at most 1.3x the baseline's. The
sampled-r schedule (mean 4, cap 16) is printed for reference, averaged over a fixed seeded draw,
since a best-of time would only pick the smallest r.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import common  # noqa: F401  (import path)
import torch
from bench_variants import BATCH, SEQ_LEN, V, interleaved, make_step
from common import figure

from looplab.models import create_model

SAMPLED_STEPS = 8


def prc_step(n_loops: int | None, drawn: list[float]) -> Callable[[], None]:
    """An optimiser step of prc at a fixed r, or at r drawn as in training (None); appends each r."""
    torch.manual_seed(0)
    model = create_model("prc", "tiny", V).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (BATCH, SEQ_LEN + 1))

    def step() -> None:
        out = model(x[:, :-1], x[:, 1:], n_loops=n_loops)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        drawn.append(out.aux["n_loops"])

    return step


def main() -> None:
    torch.set_num_threads(2)
    fixed: list[float] = []
    times = interleaved({"baseline_20": make_step("baseline", n_layer=20), "prc_r4": prc_step(4, fixed)})
    assert set(fixed) == {4.0}
    tok = BATCH * SEQ_LEN
    base, prc = times["baseline_20"], times["prc_r4"]
    print(f"baseline (20 layers) step: {base * 1e3:.1f} ms ({tok / base:,.0f} tok/s)")
    print(f"prc r=4 step: {prc * 1e3:.1f} ms ({tok / prc:,.0f} tok/s, {prc / base:.2f}x baseline)")
    drawn: list[float] = []
    sampled = prc_step(None, drawn)
    sampled()  # warm-up
    torch.manual_seed(1)
    drawn.clear()
    t0 = time.perf_counter()
    for _ in range(SAMPLED_STEPS):
        sampled()
    mean_step = (time.perf_counter() - t0) / SAMPLED_STEPS
    print(f"prc sampled r {[int(r) for r in drawn]} (mean {sum(drawn) / len(drawn):.2f}): {mean_step * 1e3:.1f} ms "
          f"per step on average ({mean_step / base:.2f}x the baseline's best step)")
    figure("prc_r4_vs_baseline_20_time_per_token", prc / base, "<=", 1.3, "x")


if __name__ == "__main__":
    main()
