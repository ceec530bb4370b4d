"""Packed examples kept apart in `ssm` and `ssm_mem` (`--packing isolated`, Mamba-2's `seq_idx`): the
scans and the convolution start every example afresh, and each example of a packed row computes, in
logits and gradients, what it computes alone ([memory; example] for ssm_mem); cached decoding of an
example alone gives the packed row's logits."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from looplab.data.batch import Batch, Segments
from looplab.models import create_model, mamba2
from looplab.models.mamba2 import Mamba2, conv_examples, ssd_chunked, ssd_sequential
from tests.helpers import V, fitted_model
from tests.models.test_mamba2 import _inputs, scan_grads

CHUNK = 4  # shorter than most examples below: boundaries fall inside chunks and between them
ROWS = ([5, 1, 9, 3, 10], [12, 7, 4, 6])  # example lengths per row; the rest of a row is padding
T = 30


def packed(rows=ROWS, t=T, seed=0) -> Batch:
    """Random tokens packed as `rows` says, padding (example -1, position 0) at the end of each row."""
    ids = torch.full((len(rows), t), -1)
    positions = torch.zeros(len(rows), t, dtype=torch.long)
    for r, lengths in enumerate(rows):
        ids[r, : sum(lengths)] = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        positions[r, : sum(lengths)] = torch.cat([torch.arange(n) for n in lengths])
    tokens = torch.randint(0, 256, (len(rows), t), generator=torch.Generator().manual_seed(seed))
    return Batch(tokens, segments=Segments(ids, positions))


def examples(batch: Batch):
    """(row, columns) of every example of a packed batch, padding left out."""
    for r in range(batch.tokens.shape[0]):
        for e in batch.segments.ids[r].unique().tolist():
            if e >= 0:
                yield r, (batch.segments.ids[r] == e).nonzero().flatten()


# --- the scans and the convolution ---------------------------------------------------------------
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_scans_start_every_example_from_h0(signed, chunk):
    """Chunked equals sequential with seq_idx, and each example equals the reference run on it alone."""
    x, dt, A, B, C, h0 = _inputs(t=T)
    seq = packed().segments.ids
    for init in (None, h0):
        y_ref, h_ref = ssd_sequential(x, dt, A, B, C, init, signed, seq)
        y, h = ssd_chunked(x, dt, A, B, C, chunk, init, signed, seq)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)
        for r in range(2):
            for e in seq[r].unique():
                c = (seq[r] == e).nonzero().flatten()
                alone = ssd_sequential(x[r : r + 1, c], dt[r : r + 1, c], A, B[r : r + 1, c], C[r : r + 1, c],
                                       None if init is None else init[r : r + 1], signed)
                torch.testing.assert_close(y[r : r + 1, c], alone[0], rtol=1e-10, atol=1e-10)
        assert not torch.allclose(y, ssd_chunked(x, dt, A, B, C, chunk, init, signed)[0])


@pytest.mark.parametrize("signed", [False, True])
def test_chunked_gradients_with_seq_idx_equal_sequential(signed):
    seq = packed().segments.ids
    inputs = _inputs(t=T)
    ref = scan_grads(lambda *a: ssd_sequential(*a, signed=signed, seq_idx=seq), inputs)
    got = scan_grads(lambda *a: ssd_chunked(*a[:5], CHUNK, a[5], signed, seq), inputs)
    for g, r in zip(got, ref):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("with_before", [False, True])
def test_convolution_reads_only_its_example(with_before):
    """Each example's convolution equals F.conv1d over [inputs before it (or zeros); the example]."""
    batch, k = packed(), 4
    gen = torch.Generator().manual_seed(0)
    xbc, weight, bias = torch.randn(2, 6, T, generator=gen), torch.randn(6, 1, k, generator=gen), torch.randn(6)
    before = torch.randn(2, 6, k - 1, generator=gen) if with_before else None
    out = conv_examples(xbc.transpose(1, 2), weight, bias, batch.segments.positions, before).transpose(1, 2)
    for r, cols in examples(batch):
        prefix = before[r : r + 1] if with_before else torch.zeros(1, 6, k - 1)
        alone = F.conv1d(torch.cat([prefix, xbc[r : r + 1, :, cols]], -1), weight, bias, groups=6)
        torch.testing.assert_close(out[r : r + 1, :, cols], alone)


# --- whole models ----------------------------------------------------------------------------------
@functools.cache
def _fitted(variant: str, negative: bool):
    return fitted_model(variant, chunk=CHUNK, negative_eigenvalues=negative)


def model(variant: str, negative: bool, impl: str):
    """The fitted model with scan `impl` (the same weights for both impls)."""
    fitted = _fitted(variant, negative)
    m = create_model(variant, "tiny", V, chunk=CHUNK, negative_eigenvalues=negative, ssm_impl=impl)
    m.load_state_dict(fitted.state_dict())
    return m.eval()


CASES = [(v, neg, impl) for v in ("ssm", "ssm_mem") for neg in (False, True) for impl in ("chunked", "sequential")]


@pytest.mark.parametrize("variant,negative,impl", CASES)
def test_each_packed_example_equals_itself_alone(variant, negative, impl):
    """Logits, and gradients w.r.t. every parameter of a loss over one example's positions."""
    m, batch = model(variant, negative, impl), packed()
    params = [p for p in m.parameters() if p.requires_grad]
    logits = m(batch).logits
    probe = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    for r, cols in examples(batch):
        alone = m(batch.tokens[r : r + 1, cols]).logits
        torch.testing.assert_close(logits[r : r + 1, cols], alone, rtol=1e-4, atol=1e-5)
        if len(cols) < 5:
            continue
        g_packed = torch.autograd.grad((logits[r, cols] * probe[r, cols]).sum(), params, retain_graph=True,
                                       allow_unused=True)
        g_alone = torch.autograd.grad((alone[0] * probe[r, cols]).sum(), params, allow_unused=True)
        for p, gp, ga in zip(params, g_packed, g_alone):
            if ga is None:
                assert gp is None or not gp.any()
                continue
            # the float32 scan sums in another order when chunks split an example differently
            torch.testing.assert_close(gp, ga, rtol=0, atol=1e-3 * float(ga.abs().max()),
                                       msg=lambda s, p=p: f"{p.shape}: {s}")
    with torch.no_grad():
        leaky = m(batch.tokens).logits  # the same rows read as single sequences
    assert not torch.allclose(leaky, logits, atol=1e-3)


@pytest.mark.parametrize("variant", ["ssm", "ssm_mem"])
@pytest.mark.parametrize("negative", [False, True])
@torch.no_grad()
def test_sequential_and_chunked_agree_on_packed_rows(variant, negative):
    batch = packed(seed=2)
    chunked, sequential = model(variant, negative, "chunked"), model(variant, negative, "sequential")
    torch.testing.assert_close(chunked(batch).logits, sequential(batch).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["ssm", "ssm_mem"])
@torch.no_grad()
def test_decoding_an_example_alone_matches_the_packed_row(variant):
    m, batch = model(variant, True, "chunked"), packed(seed=3)
    logits = m(batch).logits
    for r, cols in examples(batch):
        tokens = batch.tokens[r : r + 1, cols]
        state = m.new_state(1, len(cols))
        split = min(3, len(cols))
        pieces = [m(tokens[:, :split], state=state).logits]
        pieces += [m(tokens[:, i : i + 1], state=state).logits for i in range(split, len(cols))]
        torch.testing.assert_close(torch.cat(pieces, 1), logits[r : r + 1, cols], rtol=1e-4, atol=1e-5)


def test_packed_rows_never_take_the_kernels(monkeypatch):
    """With segments the mixer runs the pure PyTorch path even where the kernels would be used."""
    def refuse(*args, **kw):
        raise AssertionError("kernel called")

    m = model("ssm", False, "chunked")
    with torch.no_grad():
        want = m(packed()).logits
    monkeypatch.setattr(mamba2, "_KERNELS", SimpleNamespace(chunk_scan=refuse, conv=refuse))
    monkeypatch.setattr(Mamba2, "path", lambda self, device: "kernel")
    with torch.no_grad():
        torch.testing.assert_close(m(packed()).logits, want)
        with pytest.raises(AssertionError, match="kernel called"):
            m(packed().tokens)
