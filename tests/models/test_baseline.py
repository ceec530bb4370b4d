"""The baseline's contract: shapes, causality, KV cache, overfitting, config errors."""

from __future__ import annotations

import pytest
import torch

from looplab.config import SIZES
from looplab.errors import LooplabError
from looplab.models import create_model
from looplab.models.layers import attend
from tests.helpers import GENERIC, overfit, tiny_model

V = 260


def _model(variant: str = "baseline", **kw):
    return tiny_model(variant, **kw)


@pytest.mark.parametrize("variant", GENERIC)
def test_shapes_do_not_depend_on_targets(variant):
    m = _model(variant)
    x = torch.randint(0, V, (2, 17))
    a, b = m(x), m(x, x)
    assert a.logits.shape == b.logits.shape == (2, 17, V)
    assert a.loss is None and b.loss is not None and b.loss.ndim == 0
    torch.testing.assert_close(a.logits, b.logits)


@pytest.mark.parametrize("variant", GENERIC)
def test_causality(variant):
    """Changing token t+1 leaves the logits at positions <= t unchanged."""
    m = _model(variant)
    x = torch.randint(0, V, (2, 24))
    for t in (0, 7, 22):
        y = x.clone()
        y[:, t + 1 :] = torch.randint(0, V, y[:, t + 1 :].shape)
        la, lb = m(x).logits, m(y).logits
        torch.testing.assert_close(la[:, : t + 1], lb[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(la[:, t + 1 :], lb[:, t + 1 :])


def test_causality_test_catches_a_leak(monkeypatch):
    """The check above must fail if the causal mask is removed."""
    import torch.nn.functional as F

    from looplab.models import layers

    def leaky(q, k, v, start, mask=None):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=q.shape[1] != k.shape[1])

    monkeypatch.setattr(layers, "attend", leaky)
    m = _model()
    x = torch.randint(0, V, (1, 12))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % V
    assert not torch.allclose(m(x).logits[:, :6], m(y).logits[:, :6], atol=1e-5)


def test_kv_cache_matches_full_forward():
    m = _model(n_kv_head=2)
    x = torch.randint(0, V, (3, 30))
    state = m.new_state(3, 40)
    pieces = [m(x[:, :11], state=state).logits]
    for t in range(11, 20):
        pieces.append(m(x[:, t : t + 1], state=state).logits)
    pieces.append(m(x[:, 20:30], state=state).logits)  # a multi-token chunk after a prefix
    torch.testing.assert_close(torch.cat(pieces, 1), m(x).logits, rtol=1e-4, atol=1e-5)
    assert state.pos == 30


def test_attend_offset_mask_matches_reference():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 8)
    got = attend(q, k, v, start=4)
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    mask = torch.arange(7)[None, :] <= (4 + torch.arange(3))[:, None]
    ref = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_overfits_one_batch():
    first, last = overfit(tiny_model("baseline"), torch.randint(0, V, (4, 32)), steps=150)
    assert first > 4.0 and last < 0.1


def test_gqa_preset_and_param_counts():
    assert SIZES["1B-16k"]["n_kv_head"] < SIZES["1B-16k"]["n_head"]
    with torch.device("meta"):
        tiny = create_model("baseline", "tiny", V)
        micro = create_model("baseline", "micro", V)
    assert 0.3e6 < tiny.cost(256)["params"] < 0.8e6
    assert 1e6 < micro.cost(256)["params"] < 10e6


def test_seed_sizes_are_accepted():
    for name in ("nano", "50M", "125M", "300M", "350M", "760M", "1B", "1B-16k"):
        with torch.device("meta"):
            m = create_model("baseline", name, 32016)
        assert m.cfg.d_model == SIZES[name]["d_model"] and len(m.blocks) == SIZES[name]["n_layer"]


@pytest.mark.parametrize("bad, match", [
    (dict(variant="nope", size="tiny"), "unknown variant 'nope'; allowed: baseline"),
    (dict(variant="baseline", size="7T"), "unknown model size '7T'; allowed: tiny, micro, nano"),
])
def test_bad_names(bad, match):
    with pytest.raises(LooplabError, match=match):
        create_model(bad["variant"], bad["size"], V)


def test_unknown_option():
    with pytest.raises(LooplabError, match="unknown option"):
        create_model("baseline", "tiny", V, n_loops=3)
