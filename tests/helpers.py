"""Helpers shared by the tests: the variant lists (from the registry), small models, overfitting."""

from __future__ import annotations

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
