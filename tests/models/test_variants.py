"""The ladder's variants: overfitting, loop counts, presets, causal thoughts, halting, positions, cost.

Shapes, causality and cached decoding for every registered variant live in test_baseline.py and
eval/test_decode.py; this file adds what the looped, latent and absolute variants promise.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from looplab.errors import LooplabError
from looplab.models import MODELS, create_model
from looplab.models import latent as latent_mod
from looplab.models.base import LoopedModel
from looplab.models.latent import halting_reference, halting_weights, thought_attend, thought_attend_reference
from tests.helpers import GENERIC, tiny_model

V = 260
LOOPED = [name for name, spec in MODELS.items() if spec.looped]
SMALL = dict(d_model=64, n_layer=3, n_head=4, n_kv_head=4)  # shapes small enough to overfit fast


_model = tiny_model


@pytest.mark.parametrize("variant", GENERIC)
def test_overfits_one_batch(variant):
    torch.manual_seed(0)
    m = create_model(variant, "tiny", V, **SMALL)
    x = torch.randint(0, V, (2, 25))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(70):
        out = m(x[:, :-1], x[:, 1:])
        ce = F.cross_entropy(out.logits.flatten(0, 1), x[:, 1:].flatten())  # without the ponder cost
        first = first if first is not None else ce.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert first > 4.0 and ce.item() < 0.1, (first, ce.item())


@pytest.mark.parametrize("variant", GENERIC)
def test_cost_reports_every_figure(variant):
    with torch.device("meta"):
        cost = create_model(variant, "tiny", V).cost(256)
    for key in ("params", "params_non_embedding", "params_effective", "effective_depth", "flops_per_token"):
        assert cost[key] > 0, key
    assert cost["params_effective"] >= cost["params_non_embedding"]


@pytest.mark.parametrize("variant", GENERIC)
def test_looped_flag_matches_the_model(variant):
    """The registry's `looped` flag and the loop-count interface agree (evaluation relies on it)."""
    with torch.device("meta"):
        m = create_model(variant, "tiny", V)
    assert MODELS[variant].looped == isinstance(m, LoopedModel)


@pytest.mark.parametrize("variant", LOOPED)
def test_params_do_not_depend_on_n_loops(variant):
    with torch.device("meta"):
        costs = [create_model(variant, "tiny", V, n_loops=n).cost(256) for n in (1, 2, 5)]
    assert len({c["params"] for c in costs}) == 1
    flops = [c["flops_per_token"] for c in costs]
    assert flops[0] < flops[1] < flops[2]  # compute grows with loops, parameters do not
    m = _model(variant)
    before = sum(p.numel() for p in m.parameters())
    with m.with_loops(7):
        assert m.cost(256)["n_loops"] == 7
        assert sum(p.numel() for p in m.parameters()) == before


# --- shared_loop ----------------------------------------------------------------------------------
def test_shared_loop_with_one_loop_is_the_plain_stack():
    base = _model("baseline")
    looped = _model("shared_loop", preset="iso_param", n_loops=3)
    looped.load_state_dict(base.state_dict())  # same module names, same shapes
    x = torch.randint(0, V, (2, 19))
    torch.testing.assert_close(looped(x, n_loops=1).logits, base(x).logits, rtol=0, atol=0)
    assert not torch.allclose(looped(x).logits, base(x).logits)


def test_shared_loop_presets():
    with torch.device("meta"):
        base = create_model("baseline", "tiny", V).cost(256)
        iso_param = create_model("shared_loop", "tiny", V, preset="iso_param", n_loops=2).cost(256)
        iso_flop = create_model("shared_loop", "tiny", V, preset="iso_flop", n_loops=3).cost(256)
        custom = create_model("shared_loop", "tiny", V, preset="custom", n_unique=2, n_loops=4).cost(256)
    assert iso_param["params"] == base["params"] and iso_param["effective_depth"] == 2 * base["effective_depth"]
    assert iso_flop["effective_depth"] == base["effective_depth"] and iso_flop["params"] < base["params"]
    assert iso_flop["flops_per_token"] == base["flops_per_token"]
    assert custom["effective_depth"] == 8
    with pytest.raises(LooplabError, match="allowed n_loops: 1, 3"):
        create_model("shared_loop", "tiny", V, preset="iso_flop", n_loops=2)
    with pytest.raises(LooplabError, match="allowed: iso_param, iso_flop, custom"):
        create_model("shared_loop", "tiny", V, preset="deep")


def test_reinjection_is_a_switch():
    a = _model("shared_loop", reinject=True)
    b = _model("shared_loop", reinject=False)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, V, (1, 9))
    torch.testing.assert_close(a(x, n_loops=1).logits, b(x, n_loops=1).logits)
    assert not torch.allclose(a(x).logits, b(x).logits)


# --- latent: causal thoughts ----------------------------------------------------------------------
@pytest.mark.parametrize("start, T, S", [(0, 7, 7), (5, 3, 8), (9, 1, 10)])
def test_thought_attention_matches_reference(start, T, S):
    torch.manual_seed(0)
    H, Z, D = 2, 3, 8
    q, k, v = torch.randn(2, H * Z, T, D), torch.randn(2, H, S, D), torch.randn(2, H, S, D)
    torch.testing.assert_close(thought_attend(q, k, v, start), thought_attend_reference(q, k, v, start),
                               rtol=1e-5, atol=1e-5)


def _leaks(m, x: torch.Tensor, t: int) -> bool:
    y = x.clone()
    y[:, t + 1 :] = (y[:, t + 1 :] + 1) % V
    return not torch.allclose(m(x).logits[:, : t + 1], m(y).logits[:, : t + 1], atol=1e-5)


@pytest.mark.parametrize("variant", ["latent", "act"])
def test_latent_leak_is_detected(variant, monkeypatch):
    """Letting every thought read the whole sequence (the seed's sketch) must fail the causality
    check that the masked model passes."""
    x = torch.randint(0, V, (2, 14))
    m = _model(variant)
    assert not _leaks(m, x, 6)

    def whole_sequence(q, k, v, start, mask=None):
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
        return F.scaled_dot_product_attention(q, k, v)

    monkeypatch.setattr(latent_mod, "thought_attend", whole_sequence)
    assert _leaks(m, x, 6)


def test_thoughts_change_the_output():
    m = _model("latent")
    x = torch.randint(0, V, (1, 10))
    with torch.no_grad():
        full = m(x).logits
        m.inject.weight.zero_()
        assert not torch.allclose(full, m(x).logits)


# --- act: halting ---------------------------------------------------------------------------------
def test_halting_matches_reference():
    rng = random.Random(0)
    eps, K = 0.01, 5
    rows = [[rng.random() ** rng.choice([1, 3]) for _ in range(K)] for _ in range(60)]
    rows += [[0.995, 0.1, 0.1, 0.1, 0.1], [0.5, 0.49, 0.2, 0.0, 0.0], [0.0] * K, [0.25] * K, [0.3, 0.7, 0.5, 0.1, 0.9]]
    p = torch.tensor(rows, dtype=torch.float64).T.reshape(K, 5, -1)  # (K, B, T)
    got = halting_weights(p, eps)
    flat_w, flat_n, flat_r = got.weights.reshape(K, -1).T, got.depth.flatten(), got.remainder.flatten()
    for i in range(p.shape[1] * p.shape[2]):
        w, n, r = halting_reference(p.reshape(K, -1)[:, i].tolist(), eps)
        assert flat_n[i].item() == n
        assert flat_r[i].item() == pytest.approx(r, abs=1e-12)
        assert flat_w[i].tolist() == pytest.approx(w, abs=1e-12)
    torch.testing.assert_close(got.weights.sum(0), torch.ones_like(got.depth))
    assert halting_reference([0.995, 0.1], eps) == ([1.0, 0.0], 1, 1.0)
    assert halting_reference([0.2, 0.2, 0.2], eps)[1:] == (3, pytest.approx(0.6))


def test_act_starts_deep_and_reports_figures():
    m = _model("act", n_loops=4)
    x = torch.randint(0, V, (2, 12))
    out = m(x, x)
    assert {"halt_depth_mean", "halt_at_1_share", "halt_at_max_share", "ponder_cost"} <= out.aux.keys()
    assert all(torch.as_tensor(v).ndim == 0 for v in out.aux.values())
    assert float(out.aux["halt_depth_mean"]) == 4.0 and float(out.aux["halt_at_1_share"]) == 0.0
    assert float(out.aux["ponder_cost"]) == pytest.approx(4.25)  # N = 4, R = 1 - 3 / 4
    assert m.halting_histogram(x) == [0, 0, 0, 24]
    ce = F.cross_entropy(out.logits.flatten(0, 1), x.flatten())
    assert out.loss.item() == pytest.approx(ce.item() + m.opts.lambda_ponder * 4.25, abs=1e-5)


def test_act_halting_collapses_when_told_to():
    m = _model("act", halt_init=0.995)
    x = torch.randint(0, V, (2, 12))
    out = m(x)
    assert float(out.aux["halt_at_1_share"]) == 1.0 and m.halting_histogram(x) == [24, 0, 0, 0]


def test_act_is_batch_invariant():
    """Halting is per position: a row's output does not depend on when the rest of the batch halts."""
    m = _model("act", halt_init=0.3)
    with torch.no_grad():
        m.halt.weight.normal_(0, 2.0)  # spread the halting depths
    x = torch.randint(0, V, (4, 16))
    assert len([c for c in m.halting_histogram(x) if c]) > 1
    torch.testing.assert_close(m(x[1:2]).logits, m(x).logits[1:2], rtol=1e-4, atol=1e-5)


# --- absolute positions ---------------------------------------------------------------------------
def test_absolute_positions_table():
    m = _model("absolute", max_seq_len=64)
    x = torch.randint(0, V, (2, 20))
    m(x, x).loss.backward()
    grad = m.pos_embed.weight.grad
    assert grad[:20].abs().sum(-1).gt(0).all() and grad[20:].abs().sum() == 0  # untrained rows keep their init
    with pytest.raises(LooplabError, match="max_seq_len 64"):
        m(torch.randint(0, V, (1, 65)))
    assert m.cost(256)["params_non_embedding"] == _model("baseline").cost(256)["params_non_embedding"]


def test_nano_baseline_only_trains_absolute(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "nano_baseline.py"
    proc = subprocess.run([sys.executable, str(script), "--variant", "baseline", "--output_dir", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "always trains variant 'absolute'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()
