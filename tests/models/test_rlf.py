"""rlf: frozen base, per-loop loss, HALT, lifeline ablations, checkpoints, Hugging Face bases, errors."""

from __future__ import annotations

import pytest
import torch

from looplab.checkpoint import load_checkpoint, save_checkpoint
from looplab.data.pointer_chains import ChainCodec, eval_set, pad_cat
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.models import create_model
from looplab.models.rlf import per_loop_loss
from looplab.models.rlf_base import prepare_base

V = 260
BASE = dict(d_model=32, n_layer=2, n_head=2, n_kv_head=2)


@pytest.fixture
def base_path(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "base.pt", create_model("baseline", "tiny", V, **BASE), ByteTokenizer())
    return str(tmp_path / "base.pt")


def rlf(base: str, **kw):
    torch.manual_seed(1)
    return create_model("rlf", "tiny", V, base=base, **kw).eval()


def batch(model, hops=3, n=6):
    ch = eval_set(hops, n)
    codec = ChainCodec(ByteTokenizer(), model.halt_id, model.uses_specials)
    return codec.inputs(ch), codec.targets(ch)


def test_halt_is_one_row_after_the_base_head(base_path):
    m = rlf(base_path)
    x, y = batch(m)
    out = m(x, y)
    assert m.halt_id == V and out.logits.shape == (6, 4, V + 1) and out.loss.ndim == 0
    assert (y[:, -1] == V).all() and m.gate.dtype == torch.float32
    assert m(x, n_loops=4).logits.shape == out.logits.shape  # shapes do not depend on targets


def test_loop_one_reads_the_prompt_as_the_base_head_does(tmp_path):
    """The readout norm starts from the base's final norm: with the core an identity, loop 1's
    logits are the base's own at the query (the lifeline only doubles the state's scale)."""
    torch.manual_seed(0)
    base = create_model("baseline", "tiny", V, **BASE)
    with torch.no_grad():
        base.norm.weight.uniform_(0.5, 2.0)
    save_checkpoint(tmp_path / "base.pt", base, ByteTokenizer())
    m = rlf(str(tmp_path / "base.pt"))
    torch.testing.assert_close(m.norm.weight, base.norm.weight)
    m.core.forward = lambda u, prompt=None: u
    x, _ = batch(m)
    loop1, own = m(x, n_loops=1).logits[:, 0, :V], base.eval()(x).logits[:, -1]
    assert torch.equal(loop1.argmax(-1), own.argmax(-1))
    torch.testing.assert_close(loop1, own, rtol=2e-2, atol=2e-2)  # only the norm's eps sees the doubled scale


def test_core_init_from_the_base_top_blocks(base_path):
    m = rlf(base_path, core="transformer", core_init="base_top", core_heads=BASE["n_head"])
    for block, source in zip(m.core.blocks, list(m.base.layers)[-2:], strict=True):
        for (k, v), w in zip(block.state_dict().items(), source.state_dict().values(), strict=True):
            assert torch.equal(v, w), k
        assert block is not source
    with pytest.raises(LooplabError, match="core_init=base_top needs core=transformer"):
        rlf(base_path, core="mamba2", core_init="base_top")
    with pytest.raises(LooplabError, match="match the core"):
        rlf(base_path, core="transformer", core_init="base_top", core_heads=4)  # the base has 2 heads
    with pytest.raises(LooplabError, match="fresh, base_top"):
        rlf(base_path, core_init="copy")


def test_per_loop_loss_weighs_loops_equally():
    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 1] = 10.0  # row 0 right at loop 0, everything else uniform
    targets = torch.tensor([[1, 2, -100], [0, -100, -100]])
    ce_uniform = torch.log(torch.tensor(5.0))
    ce_right = torch.nn.functional.cross_entropy(logits[0, 0][None], torch.tensor([1]))
    expected = ((ce_right + ce_uniform) / 2 + ce_uniform) / 2  # loop 0 over 2 rows, loop 1 over 1 row
    torch.testing.assert_close(per_loop_loss(logits, targets), expected)


@pytest.mark.parametrize("core", ["mamba2", "transformer"])
def test_base_stays_frozen_while_the_core_learns(base_path, core):
    m = rlf(base_path, core=core).train()
    base_before = {k: v.clone() for k, v in m.base.state_dict().items()}
    core_before = {k: v.clone() for k, v in m.core.state_dict().items()}
    assert not any(p.requires_grad for p in m.base.parameters())
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    x, y = batch(m)
    losses = []
    for _ in range(8):
        loss = m(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for k, v in m.base.state_dict().items():
        assert torch.equal(v, base_before[k]), k
    assert any(not torch.equal(v, core_before[k]) for k, v in m.core.state_dict().items())


def test_adapt_top_layers(base_path):
    m = rlf(base_path, adapt_top_layers=1)
    trainable = {n for n, p in m.base.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.blocks.1.") for n in trainable)
    assert m.cost(64)["adapt_top_layers"] == 1
    x, y = batch(m)
    m(x, y).loss.backward()
    assert m.base.model.blocks[1].attn.qkv.weight.grad is not None
    with pytest.raises(LooplabError, match="allowed: 0..2"):
        rlf(base_path, adapt_top_layers=3)


def test_halt_stops_the_loop(base_path, monkeypatch):
    m = rlf(base_path)
    x, _ = batch(m, n=2)
    readout, calls = m.readout, []

    def halting_from_loop_3(h):
        calls.append(1)
        logits = readout(h)
        if len(calls) >= 3:
            logits[:, m.halt_id] = 1e4
        return logits

    monkeypatch.setattr(m, "readout", halting_from_loop_3)
    tr = m.think(x)
    assert tr.preds.shape == (2, 3) and tr.halted_at.tolist() == [3, 3] and len(calls) == 3
    calls.clear()
    assert m.think(x, stop_on_halt=False).preds.shape == (2, m.opts.max_loops)  # without stopping: the cap


def test_trace_masks_after_the_first_halt(base_path):
    m = rlf(base_path)
    logits = torch.zeros(2, 4, V + 1)
    logits[0, :, 5] = 1
    logits[0, 1, V] = 2  # row 0: HALT at loop 2, then token 5 again at loops 3-4
    logits[1, :, 7] = 1  # row 1 never halts
    tr = m.trace(logits, torch.zeros(2, 4, 3))
    assert tr.halted_at.tolist() == [2, 0]
    assert tr.preds.tolist() == [[5, V, V, V], [7, 7, 7, 7]]


def test_lifeline_ablations(base_path):
    m = rlf(base_path)
    x, _ = batch(m, n=4)

    def run(mode, seed=0, inp=x):
        return m.think(inp, 5, lifeline=mode, stop_on_halt=False, generator=torch.Generator().manual_seed(seed)).logits

    intact = run("intact")
    for mode in ("zero", "noise", "shuffle"):
        assert not torch.allclose(run(mode), intact), mode
    torch.testing.assert_close(run("noise", 3), run("noise", 3))  # seeded
    same = x[:1].repeat(3, 1)
    torch.testing.assert_close(run("shuffle", inp=same), run("intact", inp=same))  # only other rows' prompts move
    with torch.no_grad():
        m.gate.zero_()
    torch.testing.assert_close(run("zero"), run("intact"))  # a closed gate: the modes coincide
    torch.testing.assert_close(run("shuffle"), run("intact"))
    with pytest.raises(LooplabError, match="allowed: intact, zero, noise, shuffle"):
        m.think(x, 2, lifeline="half")


def test_checkpoint_carries_the_base(base_path, tmp_path):
    import os

    m = rlf(base_path, core="transformer")
    with torch.no_grad():
        m.gate.mul_(0.5)
    x, _ = batch(m)
    save_checkpoint(tmp_path / "rlf.pt", m, ByteTokenizer())
    os.remove(base_path)  # the checkpoint loads without the base file
    ck = load_checkpoint(tmp_path / "rlf.pt")
    torch.testing.assert_close(ck.model(x).logits, m(x).logits)
    assert ck.config.options["base_sha256"] and ck.config.options["base_config"]["kind"] == "looplab"
    torch.manual_seed(9)  # a different model at the old path: the checkpoint's weights still win
    save_checkpoint(base_path, create_model("baseline", "tiny", V, **BASE), ByteTokenizer())
    torch.testing.assert_close(load_checkpoint(tmp_path / "rlf.pt").model(x).logits, m(x).logits)


def _tiny_gpt2(path, vocab=V):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    return str(path)


def test_hugging_face_base(tmp_path):
    path = _tiny_gpt2(tmp_path / "gpt2")
    tok, opts = prepare_base(path, None)
    assert tok.name == "bytes" and opts["base_config"]["kind"] == "hf"
    m = create_model("rlf", "tiny", tok.vocab_size, **opts).train()
    assert m.halt_id == V and not m.uses_specials
    assert not any(p.requires_grad for p in m.base.parameters())
    x, y = batch(m)
    before = m.base.model.transformer.h[0].attn.c_attn.weight.clone()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = m(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(before, m.base.model.transformer.h[0].attn.c_attn.weight)
    save_checkpoint(tmp_path / "rlf.pt", m, tok)
    torch.testing.assert_close(load_checkpoint(tmp_path / "rlf.pt").model(x).logits, m.eval()(x).logits)
    assert rlf(path, adapt_top_layers=1).base.model.transformer.h[1].mlp.c_fc.weight.requires_grad


def test_bad_bases_are_one_line_errors(base_path, tmp_path):
    with pytest.raises(LooplabError, match="does not exist"):
        prepare_base(str(tmp_path / "missing.pt"), None)
    with pytest.raises(LooplabError, match="different tokenizer"):
        prepare_base(_tiny_gpt2(tmp_path / "small", vocab=100), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LooplabError, match="without config.json"):
        prepare_base(str(tmp_path / "empty"), None)
    save_checkpoint(tmp_path / "rlf.pt", rlf(base_path), ByteTokenizer())
    with pytest.raises(LooplabError, match="itself an rlf checkpoint"):
        prepare_base(str(tmp_path / "rlf.pt"), None)
    with pytest.raises(LooplabError, match="core must be a str \\(allowed: mamba2, transformer\\)"):
        rlf(base_path, core="lstm")
    with pytest.raises(LooplabError, match="needs a base"):
        create_model("rlf", "tiny", V)


def test_cli_refuses_a_missing_base_in_one_line(tmp_path, capsys):
    from looplab.cli import main

    rc = main(["train", "--variant", "rlf", "--base", str(tmp_path / "nope.pt"), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    rc = main(["train", "--variant", "baseline", "--base", str(tmp_path / "b.pt"), "--output_dir", str(tmp_path / "o")])
    assert rc == 2 and "rlf only" in capsys.readouterr().err


def test_loop_rotation_of_the_leading_dimensions(base_path):
    """loop_rope_dims rotates only the leading dimensions; R^T undoes R; the rest pass unchanged,
    and the default (0) rotates all of them."""
    part, full = rlf(base_path, loop_rope_dims=8), rlf(base_path)
    assert part.rope_dims == 8 and full.rope_dims == 32
    x = torch.randn(2, 5, 32)
    for m in (part, full):
        angle = 3 * m.inv_freq
        u = m.rotate(x, angle.cos(), angle.sin())
        torch.testing.assert_close(m.rotate(u, angle.cos(), -angle.sin()), x)
        assert not torch.allclose(u[..., :8], x[..., :8])
    u = part.rotate(x, (3 * part.inv_freq).cos(), (3 * part.inv_freq).sin())
    assert torch.equal(u[..., 8:], x[..., 8:])
    for bad in (7, 34):
        with pytest.raises(LooplabError, match="loop_rope_dims"):
            rlf(base_path, loop_rope_dims=bad)


def test_query_scope_is_a_full_core_pass_with_the_prompt_held(base_path):
    """core_scope=query: each loop's query state equals a causal pass of the core over [the base's
    prompt encoding, the rotated query state], read at the last position; gradients reach the core
    through every loop."""
    m = rlf(base_path, core="transformer", core_scope="query", loop_rope_dims=8)
    x, y = batch(m)
    states = m.think(x, 3, stop_on_halt=False).states
    enc = m.encode(x)
    h = enc[:, -1:]
    for loop in range(1, 4):
        h = h + m.gate * enc[:, -1:]
        angle = loop * m.inv_freq
        u = torch.cat([enc[:, :-1], m.rotate(h, angle.cos(), angle.sin())], dim=1)
        h = m.rotate(m.core(u)[:, -1:], angle.cos(), -angle.sin())
        torch.testing.assert_close(states[:, loop - 1], h[:, 0])
    m.train()(x, y).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.core.parameters())
    with pytest.raises(LooplabError, match="core_scope=query"):
        rlf(base_path, core="mamba2", core_scope="query")


def test_query_scope_with_right_padded_rows_of_two_lengths(base_path):
    """Rows whose queries sit at different positions (a padded batch of 5- and 7-hop prompts) loop
    exactly as they do alone: padding after a query is never read."""
    m = rlf(base_path, core="transformer", core_scope="query", pad_id=ByteTokenizer().pad_id)
    codec = ChainCodec(ByteTokenizer(), m.halt_id, m.uses_specials)
    short, long = codec.inputs(eval_set(5, 3)), codec.inputs(eval_set(7, 3))
    assert short.shape[1] < long.shape[1]
    mixed = pad_cat([short, long], ByteTokenizer().pad_id)[[0, 3, 1, 4, 2, 5]]
    together = m.think(mixed, 4, stop_on_halt=False).states
    alone = torch.cat([m.think(short, 4, stop_on_halt=False).states, m.think(long, 4, stop_on_halt=False).states])
    torch.testing.assert_close(together, alone[[0, 3, 1, 4, 2, 5]])
