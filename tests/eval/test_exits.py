"""Exit criteria at test time (eval.exits): the two rules on hand-made distributions, and the grid
scored at each example's chosen count."""

from __future__ import annotations

import pytest
import torch

from looplab.config import EvalConfig
from looplab.data.packing import encode_example
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.eval import exits
from looplab.eval.algorithmic import drawn, grid_cells, run_grid
from looplab.eval.decode import rows_batch
from tests.helpers import tiny_model


def dists(*rows: list[list[float]]) -> torch.Tensor:
    """(K, B, V) log-probabilities from per-loop rows of probabilities."""
    return torch.tensor(rows).log()


def test_convergence_stops_at_the_first_small_change_else_at_the_cap():
    logp = dists([[0.5, 0.5], [0.9, 0.1]], [[0.9, 0.1], [0.5, 0.5]], [[0.9, 0.1], [0.1, 0.9]])
    assert exits.converged(logp, 1e-3).tolist() == [3, 3]  # row 0 settles between loops 2 and 3; row 1 never
    logp = dists([[0.5, 0.5]], [[0.5, 0.5]])
    assert exits.converged(logp, 1e-3).tolist() == [2]
    assert exits.converged(dists([[0.2, 0.8]]), 1e-3).tolist() == [1]


def test_confidence_picks_the_most_certain_loop():
    logp = dists([[0.6, 0.4]], [[0.05, 0.95]], [[0.3, 0.7]])
    assert exits.most_confident(logp, 0.0).tolist() == [2]


def test_exit_grid_scores_each_example_at_its_chosen_count(monkeypatch):
    m = tiny_model("shared_loop")
    tok = ByteTokenizer()
    monkeypatch.setattr(exits, "choose_loops", lambda model, contexts, criterion, cap, threshold: [3] * len(contexts))
    got = exits.exit_grid(m, tok, ["parity"], "confidence", threshold=1e-3, problems=drawn(4, 0), max_new_tokens=3)
    want = run_grid(m, tok, ["parity"], problems=drawn(4, 0), max_new_tokens=3, n_loops=3)
    for n, cell in want["tasks"]["parity"]["lengths"].items():
        assert got["tasks"]["parity"]["lengths"][n]["acc"] == cell["acc"]
        assert got["tasks"]["parity"]["lengths"][n]["mean_loops"] == 3.0
        assert got["tasks"]["parity"]["lengths"][n]["max_loops"] == 2 * m.n_loops


@torch.no_grad()
def test_real_choice_is_the_rule_on_separate_forwards_at_each_count():
    """Unpatched: each cell's mean loop count is the convergence rule applied to the answer's first-token
    distributions of forward(n_loops=k), k = 1..cap, run one count at a time (and the counts differ)."""
    m, tok = tiny_model("shared_loop"), ByteTokenizer()
    task, length, split = grid_cells(["parity"])[0]
    contexts = torch.tensor([encode_example(tok, p, t)[0] for p, t in drawn(8, 0)((task, length, split))])
    cap = 2 * m.n_loops
    logp = torch.stack([m(contexts, n_loops=k).logits[:, -1].log_softmax(-1) for k in range(1, cap + 1)])
    kl = (logp[1:].exp() * (logp[1:] - logp[:-1])).sum(-1)  # (K-1, B)
    threshold = float(kl[0].median())  # half of the examples settle at loop 2
    want = exits.converged(logp, threshold)
    assert len(set(want.tolist())) > 1
    got = exits.exit_grid(m, tok, ["parity"], "convergence", threshold=threshold, problems=drawn(8, 0), max_new_tokens=3)
    cell = got["tasks"]["parity"]["lengths"][str(length)]
    assert cell["mean_loops"] == pytest.approx(want.float().mean().item()) and cell["max_loops"] == cap


def test_exits_refuse_what_they_cannot_do():
    with pytest.raises(LooplabError, match="has no loop count"):
        exits.exit_grid(tiny_model("baseline"), ByteTokenizer(), ["parity"], "confidence", threshold=1e-3,
                        problems=drawn(2, 0), max_new_tokens=3)
    with pytest.raises(LooplabError, match="allowed: convergence, confidence"):
        EvalConfig(checkpoint="x.pt", exits=("patience",))


@pytest.mark.parametrize("variant", ["shared_loop", "prc", "latent"])
@torch.no_grad()
def test_logits_per_loop_equal_one_run_per_count(variant):
    """shared_loop reads every count off one pass; the others rerun: both equal forward(n_loops=n)."""
    m = tiny_model(variant)
    x = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))
    for n, logits in enumerate(m.logits_per_loop(x, 4), start=1):
        torch.testing.assert_close(logits, m(x, n_loops=n).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["coupled", "abacus"])
@pytest.mark.parametrize("variant", ["shared_loop", "latent"])
@torch.no_grad()
def test_exits_read_each_loop_with_the_data_ids(variant, kind):
    """A model trained with coupled or abacus digit ids: each loop's logits come with the ids decoding
    computes (rows_batch), on one pass or one run per count, and the exit grid scores such a model
    (the axes ladder's loop_coupled and loop_abacus arms failed here before)."""
    m, tok = tiny_model(variant, position_ids=kind), ByteTokenizer()
    task, length, split = grid_cells(["addition_rev"])[0]
    x = torch.tensor([encode_example(tok, p, t)[0] for p, t in drawn(4, 0)((task, length, split))])
    batch = rows_batch(m, x)
    per_loop = m.logits_per_loop(batch, 3)
    for n, logits in enumerate(per_loop, start=1):
        torch.testing.assert_close(logits, m(batch, n_loops=n).logits, rtol=1e-5, atol=1e-5)
    if kind == "coupled":  # the ids matter: plain positions give other logits
        assert not torch.allclose(per_loop[0], m(x, n_loops=1).logits, atol=1e-5)
    got = exits.exit_grid(m, tok, ["addition_rev"], "confidence", threshold=1e-3, problems=drawn(4, 0),
                          max_new_tokens=6)
    assert all(0 < c["mean_loops"] <= c["max_loops"] for c in got["tasks"]["addition_rev"]["lengths"].values())
