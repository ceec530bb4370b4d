"""Test-time compute: looped variants evaluated at several loop counts through one seam."""

from __future__ import annotations

import pytest
import torch

from looplab.cli import Parser, add_eval_args
from looplab.config import EvalConfig
from looplab.errors import LooplabError
from looplab.eval.algorithmic import drawn, loop_sweep
from looplab.eval.decode import greedy, greedy_reference
from looplab.flags import read_flags
from looplab.models import MODELS
from looplab.models.base import loops_context
from tests.helpers import tiny_model

V, EOS = 260, 258
LOOPED = [name for name, spec in MODELS.items() if spec.looped]


_model = tiny_model


@pytest.mark.parametrize("variant", LOOPED)
def test_forward_argument_and_context_agree(variant):
    m = _model(variant)
    x = torch.randint(0, V, (2, 11))
    with m.with_loops(3):
        inside = m(x).logits
        assert m.loops() == 3
    assert m.loops() == m.n_loops
    torch.testing.assert_close(inside, m(x, n_loops=3).logits)
    assert not torch.allclose(m(x, n_loops=1).logits, m(x, n_loops=3).logits)


@pytest.mark.parametrize("variant", LOOPED)
@pytest.mark.parametrize("n_loops", [1, 3])
def test_cached_decoding_at_other_loop_counts(variant, n_loops):
    """Prefill and every decoding step run at the same loop count: cached equals recomputation."""
    m = _model(variant)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in (4, 7, 7)]
    with loops_context(m, n_loops):
        ref = greedy_reference(m, prompts, max_new_tokens=6, eos_id=EOS)
        cached = greedy(m, prompts, max_new_tokens=6, eos_id=EOS, batch_size=2)
    assert cached == ref


def test_loops_context_for_other_models():
    m = _model("baseline")
    with loops_context(m, None):
        pass
    with pytest.raises(LooplabError, match="no loop count"):
        loops_context(m, 2)
    with pytest.raises(LooplabError, match="positive integer"):
        _model("shared_loop").with_loops(0).__enter__()


def test_loop_sweep_reports_each_count(byte_tok):
    grid = dict(problems=drawn(2, 0), max_new_tokens=4, batch_size=8)
    res = loop_sweep(_model("shared_loop"), byte_tok, ["parity"], (1, 2, 4), **grid)
    assert list(res["loops"]) == ["1", "2", "4"] and res["trained_n_loops"] == 2
    for cell in res["loops"].values():
        assert set(cell["tasks"]["parity"]["lengths"]) and 0 <= cell["iid_acc"] <= 1
    skipped = loop_sweep(_model("baseline"), byte_tok, ["parity"], (1, 2), **grid)
    assert skipped["loops"] == {} and "no loop count" in skipped["loops_note"]


def test_eval_hub_writes_the_sweep(byte_tok, tmp_path):
    from looplab.checkpoint import save_checkpoint
    from looplab.eval.hub import evaluate_checkpoint

    path = tmp_path / "model.pt"
    save_checkpoint(path, _model("latent"), byte_tok, meta={"tasks": ["parity"]})
    cfg = EvalConfig(samples=2, max_new_tokens=4, n_loops=(1, 4))
    _, doc = evaluate_checkpoint(str(path), cfg, out_dir=str(tmp_path / "eval"))
    assert set(doc["results"]["loops"]) == {"1", "4"}
    assert doc["metadata"]["decoding"]["n_loops"] == [1, 4]
    assert (tmp_path / "eval" / "results_algorithmic.json").exists()


def test_n_loops_flag():
    """`--n_loops 1,2,4 8` reads as (1, 2, 4, 8); absent, the trained count only; zero is refused."""
    p = Parser()
    add_eval_args(p)

    def loops(*flags):
        return EvalConfig(**read_flags(EvalConfig, p.parse_args(["--checkpoint", "x.pt", *flags]))).n_loops

    assert loops("--n_loops", "1,2,4", "8") == (1, 2, 4, 8)
    assert loops() == ()
    with pytest.raises(LooplabError, match="positive integers"):
        loops("--n_loops", "1,0")


def test_loop_samples_scores_the_sweep_and_exits_on_a_prefix_of_each_cell(byte_tok, tmp_path):
    """--loop_samples N: the loop sweep and the exits score each cell's first N problems (the same ones as
    `exits_fixed`, the trained count on that subset), while the main grid scores all of them."""
    from looplab.checkpoint import save_checkpoint
    from looplab.eval.hub import evaluate_checkpoint

    path = tmp_path / "model.pt"
    save_checkpoint(path, _model("shared_loop"), byte_tok, meta={"tasks": ["copy"]})
    cfg = EvalConfig(samples=6, max_new_tokens=4, n_loops=(1, 3), exits=("confidence",), loop_samples=2)
    _, doc = evaluate_checkpoint(str(path), cfg, out_dir=str(tmp_path / "eval"))
    res = doc["results"]
    main = res["tasks"]["copy"]["lengths"]
    assert {c["n"] for c in main.values()} == {6}
    for grid in (*res["loops"].values(), res["exits"]["confidence"], res["exits_fixed"]):
        assert {c["n"] for c in grid["tasks"]["copy"]["lengths"].values()} == {2}
    assert res["loop_samples"] == 2
    for n, cell in res["exits_fixed"]["tasks"]["copy"]["lengths"].items():  # the subset is the grid's first two
        assert cell["outcomes"] == main[n]["outcomes"][:2]
    full = evaluate_checkpoint(str(path), EvalConfig(samples=6, max_new_tokens=4, n_loops=(1,)),
                               out_dir=str(tmp_path / "full"))[1]["results"]
    assert "loop_samples" not in full and {c["n"] for c in full["loops"]["1"]["tasks"]["copy"]["lengths"].values()} == {6}
    with pytest.raises(LooplabError, match="loop_samples must be >= 0"):
        EvalConfig(loop_samples=-1)
