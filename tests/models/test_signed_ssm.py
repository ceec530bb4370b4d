"""The SSM option `negative_eigenvalues` (transitions in (-1, 1), Grazzi et al. arXiv 2411.12537):
the chunked scan against the sequential reference, the reference against the formula, decoding,
causality, and the parity it makes representable."""

from __future__ import annotations

import pytest
import torch

from looplab.models.mamba2 import Mamba2, Mamba2Options, SSMCache, log_transition, ssd_chunked, ssd_sequential
from tests.helpers import tiny_model
from tests.models.test_mamba2 import _inputs, scan_grads


@pytest.mark.parametrize("t", [1, 7, 37, 100])
@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_signed_chunked_equals_sequential(t, chunk):
    x, dt, A, B, C, h0 = _inputs(t=t)
    _, neg = log_transition(dt, A, signed=True)
    if t > 5:
        assert 0 < float(neg.mean()) < 1, "the inputs should mix positive and negative transitions"
    for init in (None, h0):
        y_ref, h_ref = ssd_sequential(x, dt, A, B, C, init, signed=True)
        y, h = ssd_chunked(x, dt, A, B, C, chunk, init, signed=True)
        torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(y, ssd_sequential(x, dt, A, B, C, h0)[0])


def test_signed_reference_follows_the_formula():
    """One head, one channel, state size one, by hand: h_t = (2 exp(dt A) - 1) h_{t-1} + dt x B."""
    x, dt, A, B, C, _ = _inputs(b=1, t=9, h=1, p=1, g=1, n=1)
    y, _ = ssd_sequential(x, dt, A, B, C, signed=True)
    h, want = 0.0, []
    for i in range(9):
        a = 2 * torch.exp(dt[0, i, 0] * A[0]) - 1
        h = a * h + dt[0, i, 0] * x[0, i, 0, 0] * B[0, i, 0, 0]
        want.append(h * C[0, i, 0, 0])
    torch.testing.assert_close(y.flatten(), torch.stack(want))


def test_signed_gradients_equal_sequential():
    inputs = _inputs(t=21)
    ref = scan_grads(lambda *a: ssd_sequential(*a, signed=True), inputs)
    got = scan_grads(lambda x, dt, A, B, C, h0: ssd_chunked(x, dt, A, B, C, 8, h0, signed=True), inputs)
    for g, r in zip(got, ref):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-7)


def test_parity_is_representable_only_with_negative_eigenvalues():
    """A state written once and then multiplied by each bit's transition: bit 1 -> dt large (the
    transition near -1 when signed), bit 0 -> dt 0 (transition 1). Its sign after 64 bits is the
    parity when signed; without the option every product is positive."""
    gen = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (16, 64), generator=gen)
    t = bits.shape[1] + 1
    dt = torch.cat([torch.ones(16, 1), bits * 30.0], dim=1)[..., None].double()  # (b, t, 1)
    x = torch.zeros(16, t, 1, 1, dtype=torch.float64)
    x[:, 0] = 1.0  # write once, then only transitions
    A, B, C = -torch.ones(1, dtype=torch.float64), torch.ones(16, t, 1, 1).double(), torch.ones(16, t, 1, 1).double()
    parity = bits.sum(1) % 2
    for chunk in (8, 64):
        y, _ = ssd_chunked(x, dt, A, B, C, chunk, signed=True)
        assert torch.equal((y[:, -1, 0, 0] < 0).long(), parity)
        y_plain, _ = ssd_chunked(x, dt, A, B, C, chunk)
        assert bool((y_plain[:, -1] >= 0).all())


def test_signed_mixer_decoding_equals_full_forward_and_avoids_the_kernels():
    torch.manual_seed(0)
    m = Mamba2(24, Mamba2Options(head_dim=8, d_state=8, chunk=8, negative_eigenvalues=True))
    m.init_weights(out_std=0.02)
    m.eval()
    u = torch.randn(2, 27, 24)
    cache = SSMCache.empty(1, 2, m, u.device, u.dtype)
    with torch.no_grad():
        pieces = [m(u[:, :10], cache)] + [m(u[:, i : i + 1], cache) for i in range(10, 27)]
        torch.testing.assert_close(torch.cat(pieces, 1), m(u), rtol=1e-5, atol=1e-6)
    assert m.path(torch.device("cuda")) == "chunked"


@pytest.mark.parametrize("variant", ["ssm", "ssm_mem"])
@torch.no_grad()
def test_signed_models_are_causal(variant):
    m = tiny_model(variant, negative_eigenvalues=True)
    x = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, 10:] = 7
    torch.testing.assert_close(m(x).logits[:, :10], m(y).logits[:, :10], rtol=0, atol=1e-5)
    assert not torch.allclose(m(x).logits, tiny_model(variant)(x).logits, atol=1e-4)
