"""Cached batched greedy decoding equals the slow full-recomputation reference."""

from __future__ import annotations

import pytest
import torch

from looplab.eval.decode import greedy, greedy_reference
from looplab.models import create_model
from tests.helpers import GENERIC

V, EOS = 260, 258


@pytest.mark.parametrize("variant", GENERIC)
def test_cached_equals_recomputation(variant):
    torch.manual_seed(1)
    m = create_model(variant, "tiny", V).eval()
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in (5, 5, 9, 3, 9, 9, 12)]
    ref = greedy_reference(m, prompts, max_new_tokens=12, eos_id=EOS)
    cached = greedy(m, prompts, max_new_tokens=12, eos_id=EOS, batch_size=2)
    recomputed = greedy(m, prompts, max_new_tokens=12, eos_id=EOS, use_cache=False)
    assert cached == ref == recomputed
    assert all(len(r) == 12 or r[-1] == EOS for r in ref)


def test_stops_at_eos_and_cap():
    torch.manual_seed(0)
    m = create_model("baseline", "tiny", V).eval()

    def force_eos(_, __, out):
        out.logits[..., EOS] = 1e4
        return out

    h = m.register_forward_hook(force_eos)
    assert greedy(m, [[1, 2, 3]], max_new_tokens=50, eos_id=EOS) == [[EOS]]
    h.remove()
    out = greedy(m, [[1, 2, 3]], max_new_tokens=7, eos_id=-1)
    assert len(out[0]) == 7
