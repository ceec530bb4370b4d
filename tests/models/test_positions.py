"""The position-encoding axis (models.positions) on every generic variant: causality and cached
decoding for every (variant, pos_encoding) pair, the random draw, and the `absolute` control."""

from __future__ import annotations

import pytest
import torch

from looplab.config import POS_ENCODINGS, model_config
from looplab.errors import LooplabError
from looplab.models import create_model
from looplab.models.positions import Positions
from tests.helpers import GENERIC, V, tiny_model

REFUSED = {("ssm", "random"), ("absolute", "nope"), ("absolute", "random")}  # no attention / fixed encoding
PAIRS = [(v, pe) for v in GENERIC for pe in POS_ENCODINGS if (v, pe) not in REFUSED]


def tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant,pe", PAIRS)
@torch.no_grad()
def test_causal_and_cached_decoding_equals_recomputation(variant, pe):
    m = tiny_model(variant, pos_encoding=pe)
    x = tokens(2, 16, 0)
    full = m(x).logits
    for t in (0, 8):
        y = x.clone()
        y[:, t + 1 :] = tokens(2, 15 - t, 1 + t)
        torch.testing.assert_close(m(y).logits[:, : t + 1], full[:, : t + 1], rtol=0, atol=1e-5)
    state = m.new_state(2, 16)
    if pe == "random":  # positions are drawn per sequence: decoding recomputes it
        assert state is None
        return
    parts = [m(x[:, :9], state=state).logits] + [m(x[:, t : t + 1], state=state).logits for t in range(9, 16)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant,pe", sorted(REFUSED))
def test_refused_pairs_are_one_line_errors(variant, pe):
    with pytest.raises(LooplabError, match="pos_encoding"):
        create_model(variant, "tiny", V, pos_encoding=pe)


def test_unknown_encoding_names_the_allowed_values():
    with pytest.raises(LooplabError, match="allowed: rope, nope, absolute, random"):
        model_config("tiny", V, pos_encoding="alibi")


def test_encodings_give_different_models():
    """The setting reaches the attention: the same weights give different logits under each encoding."""
    x = tokens(1, 12, 3)
    outs = {}
    for pe in ("rope", "nope", "random"):
        outs[pe] = tiny_model("baseline", pos_encoding=pe)(x).logits
    assert not torch.allclose(outs["rope"], outs["nope"], atol=1e-4)
    assert not torch.allclose(outs["rope"], outs["random"], atol=1e-4)


def test_random_draw_is_sorted_in_range_per_row_in_training_and_fixed_per_length_in_evaluation():
    cfg = model_config("tiny", V, pos_encoding="random", pos_range=64)
    pos = Positions(cfg, cfg.head_dim)
    ids = pos.train().draw(8, 20, torch.device("cpu"))
    assert ids.shape == (8, 20) and int(ids.min()) >= 0 and int(ids.max()) < 64
    assert bool((ids.diff(dim=1) > 0).all())  # sorted and distinct
    assert len({tuple(r.tolist()) for r in ids}) > 1  # each row its own draw
    pos.eval()
    a, b = pos.draw(8, 20, torch.device("cpu")), pos.draw(1, 20, torch.device("cpu"))
    assert a.shape == (1, 20) and torch.equal(a, b)  # one draw per length, whatever the batch
    assert not torch.equal(a[:, :19], pos.draw(1, 19, torch.device("cpu")))
    with pytest.raises(LooplabError, match="pos_range 64"):
        pos.draw(1, 65, torch.device("cpu"))


def test_packed_examples_each_draw_their_own_sorted_random_positions():
    """Random positions in isolated packed rows: every example a sorted, distinct subset of [0, range) of
    its own length, drawn independently of its row-mates; one fixed draw per row length in evaluation."""
    cfg = model_config("tiny", V, pos_encoding="random", pos_range=64)
    pos = Positions(cfg, cfg.head_dim).train()
    within = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]])  # 4 + 3 + 2 + 1; 8 + 2
    ids = pos.draw(2, 10, torch.device("cpu"), within=within)
    assert ids.shape == (2, 10) and int(ids.min()) >= 0 and int(ids.max()) < 64
    for row, runs in ((0, [(0, 4), (4, 7), (7, 9), (9, 10)]), (1, [(0, 8), (8, 10)])):
        for a, b in runs:
            assert bool((ids[row, a + 1 : b] > ids[row, a : b - 1]).all())  # sorted, distinct within the example
    starts = torch.stack([pos.draw(1, 10, torch.device("cpu"), within=within[:1])[0, [0, 4, 7]] for _ in range(200)])
    assert len({tuple(r.tolist()) for r in starts}) > 150 and not bool((starts[:, 0] == starts[:, 1]).all())
    # the first position of a 4-long example is uniform over 0..60 in law: its mean is (64 - 4) / 5 = 12
    assert abs(float(starts[:, 0].float().mean()) - 12.0) < 3.0
    pos.eval()
    a, b = pos.draw(2, 10, torch.device("cpu"), within=within), pos.draw(2, 10, torch.device("cpu"), within=within)
    assert torch.equal(a, b)
    with pytest.raises(LooplabError, match="pos_range 64"):
        pos.draw(1, 70, torch.device("cpu"), within=torch.arange(70)[None])


@pytest.mark.parametrize("variant", ["baseline", "latent", "shared_loop"])
def test_random_positions_train_on_isolated_packed_rows(variant):
    """A packed row of two examples with random positions: attention stays within each example (the
    second example's logits do not depend on the first's tokens) and the loss is finite."""
    from looplab.data.batch import Batch, Segments

    m = tiny_model(variant, pos_encoding="random").eval()
    x = tokens(1, 12, 7)
    seg_ids = torch.tensor([[0] * 5 + [1] * 7])
    within = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]])
    out = m(Batch(x, x, segments=Segments(seg_ids, within)))
    y = x.clone()
    y[:, :5] = tokens(1, 5, 8)
    again = m(Batch(y, y, segments=Segments(seg_ids, within)))
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.logits[:, 5:], again.logits[:, 5:], rtol=0, atol=1e-5)


def test_rotary_tables_at_positions_equal_the_contiguous_tables():
    """The per-row path (random positions) against the shared one: ids 0..T-1 give the same rotation."""
    cfg = model_config("tiny", V)
    pos = Positions(cfg, cfg.head_dim)
    cos, sin = pos(3, 10)
    cos_at, sin_at = pos.rotary.at(torch.arange(3, 13)[None].expand(2, -1), 13)
    assert cos_at.shape == (2, 10, cfg.head_dim // 2)
    torch.testing.assert_close(cos_at[1], cos)
    torch.testing.assert_close(sin_at[0], sin)
    far = torch.tensor([[0, 1500, 2999]])  # past the table built for max_seq_len: it grows to the bound given
    torch.testing.assert_close(pos.rotary.at(far, 3000)[0][0, 2], pos(2999, 1)[0][0])


def test_absolute_variant_is_the_baseline_with_absolute_positions():
    x = tokens(2, 10, 4)
    a, b = tiny_model("absolute"), tiny_model("baseline", pos_encoding="absolute")
    assert a.state_dict().keys() == b.state_dict().keys() and "pos_embed.weight" in a.state_dict()
    torch.testing.assert_close(a(x).logits, b(x).logits)
    with pytest.raises(LooplabError, match="past the absolute-position table"):
        a(tokens(1, a.cfg.max_seq_len + 1, 5))
