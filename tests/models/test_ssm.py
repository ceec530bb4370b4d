"""`ssm` and `ssm_mem`: strict causality, decoding with constant-size state, training, options, cost."""

from __future__ import annotations

import pytest
import torch

from looplab.errors import LooplabError
from looplab.eval.decode import greedy
from looplab.models import create_model
from looplab.models.layers import Block
from tests.helpers import overfit, tiny_model

V = 260
VARIANTS = ("ssm", "ssm_mem")


_model = tiny_model


def _state_shapes(state) -> list[tuple[int, ...]]:
    tensors = [state.ssm.conv, state.ssm.ssm] + ([state.kv.k, state.kv.v] if state.kv is not None else [])
    return [tuple(t.shape) for t in tensors]


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_position_sees_the_future(variant):
    """Gradient check, stricter than perturbing tokens: d logits[t] / d embedding[s] is exactly zero
    for every s > t, and not for s <= t. Chunk 4 makes the 19 tokens cross several chunk boundaries."""
    m = _model(variant, chunk=4)
    idx = torch.randint(0, V, (1, 19))
    x = m.embed(idx).detach().requires_grad_(True)  # (1, T, C)
    m.embed.register_forward_hook(lambda module, inputs, out: x)
    logits = m(idx).logits
    for t in (0, 3, 4, 11, 17):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), x, retain_graph=True)
        assert grad[0, t + 1 :].abs().max() == 0, f"position {t} depends on a later position"
        assert (grad[0, : t + 1].abs().sum(-1) > 0).all()


def test_ssm_mem_has_memory_and_attention():
    m = _model("ssm_mem")
    kinds = ["attn" if isinstance(layer, Block) else "ssm" for layer in m.layers]
    assert kinds == ["ssm", "ssm", "attn"] and m.memory_embed.shape == (8, m.cfg.d_model)
    x = torch.randint(0, V, (1, 10))
    before = m(x).logits
    with torch.no_grad():
        m.memory_embed.add_(1.0)
    assert not torch.allclose(before, m(x).logits), "memory tokens must reach the outputs"


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoding_equals_full_forward(variant):
    m = _model(variant, chunk=8)
    x = torch.randint(0, V, (3, 30))
    state = m.new_state(3, 40)
    with torch.no_grad():
        pieces = [m(x[:, :11], state=state).logits]
        pieces += [m(x[:, t : t + 1], state=state).logits for t in range(11, 20)]
        pieces.append(m(x[:, 20:30], state=state).logits)
        torch.testing.assert_close(torch.cat(pieces, 1), m(x).logits, rtol=1e-4, atol=1e-5)
    assert state.pos == 30 + m.n_mem


def test_ssm_state_does_not_grow_with_the_prompt():
    """The decoding state has the same tensors for any length; a 4096-token prompt decodes, and its
    last logits from prefill + steps equal those of a full forward."""
    m = _model("ssm")
    assert _state_shapes(m.new_state(2, 16)) == _state_shapes(m.new_state(2, 100_000))
    prompt = torch.randint(0, 256, (1, 4096))
    state = m.new_state(1, 4096 + 4)
    shapes = _state_shapes(state)
    with torch.no_grad():
        m(prompt[:, :-1], state=state)
        last = m(prompt[:, -1:], state=state).logits[:, -1]
        torch.testing.assert_close(last, m(prompt).logits[:, -1], rtol=1e-4, atol=1e-4)
    assert _state_shapes(state) == shapes and state.pos == 4096
    out = greedy(m, prompt.tolist(), max_new_tokens=4, eos_id=-1)
    assert len(out[0]) == 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_overfits_one_batch(variant):
    m = tiny_model(variant, chunk=16)
    first, last = overfit(m, torch.randint(0, V, (4, 33)), steps=50)
    assert first > 4.0 and last < 0.1


def test_sequential_impl_gives_the_same_model():
    chunked, sequential = _model("ssm", chunk=8), _model("ssm", chunk=8, ssm_impl="sequential")
    sequential.load_state_dict(chunked.state_dict())
    x = torch.randint(0, V, (2, 21))
    torch.testing.assert_close(chunked(x).logits, sequential(x).logits, rtol=1e-4, atol=1e-5)


def test_cost_names_the_path_and_counts_params():
    with torch.device("meta"):
        with_mlp, without = create_model("ssm", "tiny", V), create_model("ssm", "tiny", V, mlp=False)
        base = create_model("baseline", "tiny", V)
    cost = with_mlp.cost(256)
    assert cost["ssm_path"] == "chunked"
    assert without.cost(256)["params"] < cost["params"]
    assert 0.5 < cost["params_non_embedding"] / base.cost(256)["params_non_embedding"] < 1.5
    assert cost["flops_per_token"] > 6 * cost["params_non_embedding"]


@pytest.mark.parametrize("variant, opts, match", [
    ("ssm", dict(ssm_impl="fast"), "ssm_impl must be a str \\(allowed: auto, chunked, sequential\\), got 'fast'"),
    ("ssm", dict(n_mem=4), "unknown option"),
    ("ssm_mem", dict(attn_every=4), "attn_every 4 leaves no attention layer in 3 layers"),
    ("ssm_mem", dict(attn_every=1), "attn_every must be an int >= 2"),
])
def test_bad_options(variant, opts, match):
    with pytest.raises(LooplabError, match=match):
        create_model(variant, "tiny", V, **opts)
