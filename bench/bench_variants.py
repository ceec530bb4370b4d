"""Training-step cost of the looped and latent variants against the baseline, in one process.

An optimiser step (forward, backward, AdamW) on a `tiny` model, batch 16 x seq_len 256, the same
random batch for every variant, timed in interleaved rounds (best of each). Targets (the issue's rent rule): `shared_loop` at 2 loops with the
baseline's unique depth (preset iso_param) costs at most 2.3x the baseline's step, and `latent` with
K = 2 at most 2x. `act` (cap 4), the iso-FLOP shared loop and `absolute` are printed for reference.
"""

from __future__ import annotations

from collections.abc import Callable

import common  # noqa: F401  (import path)
import torch
from common import best_of, figure

from looplab.models import create_model

BATCH, SEQ_LEN, V = 16, 256, 260


def make_step(variant: str, **options: object) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(variant, "tiny", V, **options).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (BATCH, SEQ_LEN + 1))

    def step() -> None:
        loss = model(x[:, :-1], x[:, 1:]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def interleaved(steps: dict[str, Callable[[], None]], rounds: int = 5) -> dict[str, float]:
    """Best step time of each variant over `rounds` rounds that time every variant once in turn,
    so a burst of load from other processes cannot favour one variant."""
    for step in steps.values():
        step()  # warm-up
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            best[name] = min(best[name], best_of(step, repeats=1, warmup=0))
    return best


def main() -> None:
    torch.set_num_threads(2)
    times = interleaved({
        "baseline": make_step("baseline"),
        "shared_loop_iso_param_2": make_step("shared_loop", preset="iso_param", n_loops=2),
        "latent_k2": make_step("latent", n_loops=2),
        "shared_loop_iso_flop_3": make_step("shared_loop", preset="iso_flop", n_loops=3),
        "act_max4": make_step("act"),
        "absolute": make_step("absolute"),
    })
    base = times.pop("baseline")
    runs = times
    tok = BATCH * SEQ_LEN
    print(f"baseline step: {base * 1e3:.1f} ms ({tok / base:,.0f} tok/s)")
    for name, sec in runs.items():
        print(f"{name} step: {sec * 1e3:.1f} ms ({sec / base:.2f}x baseline)")
    figure("shared_loop_2_loops_vs_baseline_step_time", runs["shared_loop_iso_param_2"] / base, "<=", 2.3, "x")
    figure("latent_k2_vs_baseline_step_time", runs["latent_k2"] / base, "<=", 2.0, "x")


if __name__ == "__main__":
    main()
