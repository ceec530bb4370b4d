"""Helpers shared by the tests: the variant lists (from the registry), small models, overfitting, and
the flags of the one trained run the session shares (tests/conftest.py's `trained_run`)."""

from __future__ import annotations

from pathlib import Path

import torch

from looplab.models import MODELS, create_model

V = 260  # the byte tokenizer's vocabulary
# Variants that are next-token LMs on (B, T) and run the per-variant tests; rlf is not (ModelSpec.generic).
GENERIC = [name for name, spec in MODELS.items() if spec.generic]
LOOPED = [name for name, spec in MODELS.items() if spec.generic and spec.looped]  # take a loop count at evaluation
ISOLATING = [name for name in GENERIC if MODELS[name].isolates]  # keep packed examples apart (--packing isolated)


def tiny_model(variant: str, **kw):
    """A `tiny` model of `variant`, seeded, in eval mode."""
    torch.manual_seed(0)
    return create_model(variant, "tiny", V, **kw).eval()


def overfit(model: torch.nn.Module, x: torch.Tensor, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Train on one batch of next-token targets; return the first and last loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    first = last = None
    for _ in range(steps):
        loss = model(x[:, :-1], x[:, 1:]).loss
        first = loss.item() if first is None else first
        last = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, last


def fitted_model(variant: str, steps: int = 25, seed: int = 0, **kw):
    """A `tiny` model after `steps` AdamW steps on one random batch, in eval mode: its logits depend on
    position and token, unlike an untrained model's, so equality tests compare numbers that can differ."""
    model = tiny_model(variant, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        overfit(model, torch.randint(0, 256, (4, 33), generator=g), steps)
    return model.eval()


# train.py's flags for the session's shared run (tests that resume it pass the same ones): a tiny
# baseline on the tasks the evaluation tests read (parity's 32-bit probe, passkey's curve), two
# evaluations so that last_model.prev.pt exists, a metrics row every other step.
TRAINED_TASKS = ["parity", "passkey"]
TRAINED_TOKENS = 6 * 8 * 192
TRAINED_ARGS = ["--model_size", "tiny", "--variant", "baseline", "--alg_tasks", *TRAINED_TASKS,
                "--alg_tokens", str(TRAINED_TOKENS), "--seq_len", "192", "--batch_size", "8",
                "--warmup_tokens", "1024", "--log_every", "2", "--eval_every_tokens", str(TRAINED_TOKENS // 2),
                "--eval_samples", "4", "--eval_max_new_tokens", "8", "--threads", "1", "--no_progress"]


def train_tiny_run(out: Path) -> Path:
    """Train the shared run into `out` through train.py's code path, in this process."""
    from looplab.cli import train_main

    assert train_main([*TRAINED_ARGS, "--output_dir", str(out)]) == 0
    return out
