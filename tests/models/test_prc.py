"""What `prc` promises: the recurrence sampler, truncated backprop, the identity adapter, the decoding
cache budget and warm start, causality, cost and option errors."""

from __future__ import annotations

import pytest
import torch

from looplab.errors import LooplabError
from looplab.eval.decode import greedy, greedy_reference
from looplab.models import create_model
from looplab.models.depth_recurrent import sample_recurrences
from tests.helpers import V, tiny_model
from tests.models.test_variants import _leaks

EOS = 258


def _decode_logits(m, x: torch.Tensor, prefill: int, exact: bool = True) -> torch.Tensor:
    """Logits of a prefill chunk then one token at a time through the decoding state."""
    state = m.new_state(x.shape[0], x.shape[1], exact=exact)
    with torch.no_grad():
        pieces = [m(x[:, :prefill], state=state).logits]
        pieces += [m(x[:, t : t + 1], state=state).logits for t in range(prefill, x.shape[1])]
    return torch.cat(pieces, dim=1)  # (B, T, V)


# --- training recurrence schedule ------------------------------------------------------------------
def test_sampler_mean_and_cap():
    g = torch.Generator().manual_seed(0)
    draws = [sample_recurrences(4.0, 16, g) for _ in range(4000)]
    assert abs(sum(draws) / len(draws) - 4.0) < 0.15
    assert min(draws) >= 1 and max(draws) <= 16 and len(set(draws)) > 5
    capped = [sample_recurrences(4.0, 5, g) for _ in range(500)]
    assert max(capped) == 5 and min(capped) >= 1
    assert {sample_recurrences(1.0, 16, g) for _ in range(20)} == {1}


def test_training_samples_r_from_the_global_seed_and_eval_is_fixed():
    m = tiny_model("prc").train()
    x = torch.randint(0, V, (1, 6))

    def schedule() -> list[float]:
        torch.manual_seed(7)
        return [m(x).aux["n_loops"] for _ in range(12)]

    first = schedule()
    assert first == schedule() and len(set(first)) > 1 and all(1 <= r <= 16 for r in first)
    assert m(x, n_loops=3).aux["n_loops"] == 3.0
    with m.with_loops(5):
        assert m(x).aux["n_loops"] == 5.0
    m.eval()
    assert m.n_loops == 4 and m(x).aux["n_loops"] == 4.0
    assert tiny_model("prc", train_recur_mean=2.6).n_loops == 3
    assert tiny_model("prc", n_loops=6).n_loops == 6


# --- truncated backprop ----------------------------------------------------------------------------
@pytest.mark.parametrize("n_loops, bptt_k", [(7, 4), (3, 4), (5, 1)])
def test_gradients_reach_only_the_last_k_recurrences(n_loops, bptt_k):
    m = tiny_model("prc", bptt_k=bptt_k).train()
    outputs = []
    m.core_blocks[0].register_forward_hook(lambda _, __, out: outputs.append(out))
    x = torch.randint(0, V, (2, 9))
    m(x, x, n_loops=n_loops).loss.backward()
    grads = [o.requires_grad for o in outputs]
    n_free = max(n_loops - bptt_k, 0)
    assert grads == [False] * n_free + [True] * (n_loops - n_free)
    assert m.prelude_blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # e is injected in the gradient loop
    assert m.adapter.weight.grad.abs().sum() > 0


# --- injection ---------------------------------------------------------------------------------------
def test_adapter_passes_the_state_through_at_init():
    m = tiny_model("prc")
    s, e = torch.randn(2, 5, m.cfg.d_model), torch.randn(2, 5, m.cfg.d_model)
    with torch.no_grad():
        torch.testing.assert_close(m.inject(s, torch.zeros_like(e)), s)
        torch.testing.assert_close(m.inject(s, e), s + e)
    added = tiny_model("prc", inject_mode="add")
    assert added.adapter is None
    added.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("adapter")})
    x = torch.randint(0, V, (2, 11))
    torch.testing.assert_close(m(x).logits, added(x).logits, rtol=1e-5, atol=1e-5)


# --- decoding: cache budget and warm start ----------------------------------------------------------
def test_full_budget_decoding_equals_recomputation():
    m = tiny_model("prc", kv_cache_recur_budget=4)
    x = torch.randint(0, V, (3, 24))
    torch.testing.assert_close(_decode_logits(m, x, 9), m(x).logits, rtol=1e-4, atol=1e-5)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in (5, 9, 9, 3)]
    for n_loops in (2, 4):  # budget >= r at both counts
        with m.with_loops(n_loops):
            ref = greedy_reference(m, prompts, max_new_tokens=8, eos_id=EOS)
            assert greedy(m, prompts, max_new_tokens=8, eos_id=EOS, batch_size=2) == ref


def test_default_state_is_exact_whatever_the_budget():
    """Evaluation scores with `new_state()`: every recurrence kept, no warm start, whatever the options."""
    m = tiny_model("prc", kv_cache_recur_budget=1, recur_warm_start=True)
    x = torch.randint(0, V, (2, 16))
    assert m.new_state(2, 16).cache.k.shape[0] == 2 + 2 + 4 * 4  # prelude, coda, every recurrence of the core
    torch.testing.assert_close(_decode_logits(m, x, 6), m(x).logits, rtol=1e-4, atol=1e-5)
    assert m.approximate_cache() and not tiny_model("prc", kv_cache_recur_budget=4).approximate_cache()
    assert not tiny_model("baseline").approximate_cache()


def test_budget_keeps_only_the_last_recurrences():
    x = torch.randint(0, V, (2, 16))
    full = tiny_model("prc", kv_cache_recur_budget=1)
    assert full.new_state(2, 16, exact=False).cache.k.shape[0] == 2 + 2 + 4  # prelude, coda, one recurrence
    assert tiny_model("prc", kv_cache_recur_budget=3).new_state(2, 16, exact=False).cache.k.shape[0] == 2 + 2 + 3 * 4
    decoded = _decode_logits(full, x, 6, exact=False)
    torch.testing.assert_close(decoded[:, :6], full(x[:, :6]).logits, rtol=1e-4, atol=1e-5)  # prefill is exact
    assert not torch.allclose(decoded[:, 6:], full(x).logits[:, 6:], atol=1e-4)  # later tokens read r = 4 only
    with full.with_loops(1):  # one recurrence: budget 1 keeps everything
        torch.testing.assert_close(_decode_logits(full, x, 6, exact=False), full(x).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opts", [dict(recur_warm_start=True), dict(kv_cache_recur_budget=2),
                                  dict(recur_warm_start=True, kv_cache_recur_budget=1)])
def test_warm_start_and_budget_decoding_is_deterministic(opts):
    m = tiny_model("prc", **opts)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in (4, 7, 7)]
    runs = [greedy(m, prompts, max_new_tokens=8, eos_id=EOS, batch_size=2, exact=False) for _ in range(2)]
    assert runs[0] == runs[1] and all(len(r) == 8 or r[-1] == EOS for r in runs[0])
    x = torch.randint(0, V, (2, 12))
    torch.testing.assert_close(_decode_logits(m, x, 5, False), _decode_logits(m, x, 5, False), rtol=0, atol=0)


def test_warm_start_changes_decoded_tokens_only():
    cold = tiny_model("prc", kv_cache_recur_budget=4)
    warm = tiny_model("prc", kv_cache_recur_budget=4, recur_warm_start=True)
    x = torch.randint(0, V, (2, 12))
    a, b = _decode_logits(cold, x, 5, exact=False), _decode_logits(warm, x, 5, exact=False)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)  # the prefill starts from the init
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-4)
    torch.testing.assert_close(_decode_logits(warm, x, 5), warm(x).logits, rtol=1e-4, atol=1e-5)  # exact: no warm


def test_state_must_match_the_loop_count():
    m = tiny_model("prc")
    state = m.new_state(1, 8)
    with pytest.raises(LooplabError, match="n_loops=4"):
        m(torch.randint(0, V, (1, 3)), state=state, n_loops=2)


# --- causality, cost, options ------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [dict(), dict(inject_mode="add"), dict(state_init="random"),
                                  dict(prelude=0, coda=1, n_loops=7)])
def test_causality(opts):
    m = tiny_model("prc", **opts)

    def same_noise(*_) -> None:
        torch.manual_seed(5)

    if opts.get("state_init") == "random":  # the same initial state for both calls of the check
        m.register_forward_pre_hook(same_noise)
    x = torch.randint(0, V, (2, 14))
    for t in (0, 6, 12):
        assert not _leaks(m, x, t)
    assert not torch.allclose(m(x).logits, m((x + 1) % V).logits)  # the logits do read the tokens


def test_cost_and_parameters_do_not_depend_on_r():
    with torch.device("meta"):
        m = create_model("prc", "tiny", V)
        add = create_model("prc", "tiny", V, inject_mode="add")
        base20 = create_model("baseline", "tiny", V, n_layer=20).cost(256)
    costs = {}
    for r in (1, 4, 16):
        with m.with_loops(r):
            costs[r] = m.cost(256)
    assert len({c["params"] for c in costs.values()}) == 1
    assert [c["effective_depth"] for c in costs.values()] == [2 + 4 * r + 2 for r in (1, 4, 16)]
    assert costs[1]["flops_per_token"] < costs[4]["flops_per_token"] < costs[16]["flops_per_token"]
    assert costs[4]["effective_depth"] == base20["effective_depth"] == 20
    assert add.cost(256)["flops_per_token"] == base20["flops_per_token"]  # iso-FLOP at r = 4
    assert 1 < costs[4]["flops_per_token"] / base20["flops_per_token"] < 1.06  # plus the 2C x C adapter
    assert costs[4]["params"] < base20["params"]


@pytest.mark.parametrize("field, value", [
    ("prelude", -1), ("recur", 0), ("coda", 1.5), ("train_recur_mean", 0.5), ("train_recur_mean", 20.0),
    ("train_recur_max", 0), ("n_loops", -2), ("bptt_k", 0), ("inject_mode", "mul"), ("state_init", "ones"),
    ("recur_warm_start", "yes"), ("kv_cache_recur_budget", 0),
])
def test_bad_options_name_the_field(field, value):
    with pytest.raises(LooplabError, match=f"{field} must be"):
        create_model("prc", "tiny", V, **{field: value})
