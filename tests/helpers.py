"""Small helpers shared by the model tests."""

from __future__ import annotations

import torch

from looplab.models import MODELS, create_model

V = 260  # the byte tokenizer's vocabulary
# Variants that are next-token LMs on (B, T) and run the per-variant tests; rlf is not (ModelSpec.generic).
GENERIC = [name for name, spec in MODELS.items() if spec.generic]



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
