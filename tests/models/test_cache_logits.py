"""Cached decoding against full recomputation, logit by logit, and causality, for every generic
variant at more than one loop count, on fitted models (tests.helpers.fitted_model) whose outputs
are not trivial: a cache bug that perturbs the logits fails here even when greedy tokens agree."""

from __future__ import annotations

import functools

import pytest
import torch

from looplab.models import MODELS
from looplab.models.base import loops_context
from tests.helpers import GENERIC, LOOPED, fitted_model

PROMPT, STEPS = 7, 9  # prefill length, then single-token decoding steps


def loop_counts(variant: str) -> tuple[int | None, ...]:
    return (1, 3) if MODELS[variant].looped else (None,)


@functools.cache
def model(variant: str) -> torch.nn.Module:
    return fitted_model(variant)


def tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", GENERIC)
@torch.no_grad()
def test_cached_logits_equal_recomputed(variant):
    m = model(variant)
    x = tokens(2, PROMPT + STEPS, 1)
    seen = []
    for n in loop_counts(variant):
        with loops_context(m, n):
            full = m(x).logits
            state = m.new_state(2, PROMPT + STEPS)
            parts = [m(x[:, :PROMPT], state=state).logits]
            parts += [m(x[:, t : t + 1], state=state).logits for t in range(PROMPT, PROMPT + STEPS)]
        torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-4, atol=1e-4)
        assert full.argmax(-1).unique().numel() >= 4, "the fitted model's predictions should vary"
        seen.append(full)
    if len(seen) > 1:  # the loop count changes the output: the comparison ran at two different computations
        assert not torch.allclose(seen[0], seen[1], atol=1e-3)


@pytest.mark.parametrize("variant", LOOPED)
@pytest.mark.parametrize("n_loops", [1, 3, 5])
@torch.no_grad()
def test_causality_at_other_loop_counts(variant, n_loops):
    """Changing tokens after position t leaves the logits at positions <= t unchanged, at every loop count."""
    m = model(variant)
    x = tokens(2, 20, 2)
    with loops_context(m, n_loops):
        for t in (0, 9, 18):
            y = x.clone()
            y[:, t + 1 :] = tokens(2, 20 - t - 1, 3 + t)
            la, lb = m(x).logits, m(y).logits
            torch.testing.assert_close(la[:, : t + 1], lb[:, : t + 1], rtol=0, atol=1e-5)
            assert not torch.allclose(la[:, t + 1 :], lb[:, t + 1 :])
