"""Loops that grow with the input (models.base.LengthLoops) for shared_loop and prc: the policy, the
per-row masks against one-row runs, the data stream's row lengths, evaluation per cell, training."""

from __future__ import annotations

import json

import pytest
import torch

from looplab.config import TrainConfig, model_config
from looplab.data.batch import Batch
from looplab.data.packing import AlgoStream
from looplab.data.tasks import TASKS
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.eval import algorithmic
from looplab.models.base import LengthLoops
from looplab.train.trainer import Trainer
from tests.helpers import V, tiny_model

POLICY = dict(loops_per_length=0.5, loops_offset=1, loops_cap=5)
CASES = [("shared_loop", {}), ("prc", dict(prelude=1, recur=1, coda=1))]


def test_policy_counts_round_and_clip():
    p = LengthLoops(per_length=0.5, offset=1, cap=5)
    assert [p.count(n) for n in (0, 1, 2, 4, 8, 64)] == [1, 2, 2, 3, 5, 5]  # round half to even, as torch does
    assert p.counts(torch.tensor([0, 1, 2, 4, 8, 64])).tolist() == [1, 2, 2, 3, 5, 5]
    with pytest.raises(LooplabError, match="loops_per_length must be a float >= 0"):
        tiny_model("shared_loop", loops_per_length=-1.0)


@pytest.mark.parametrize("variant,opts", CASES)
@torch.no_grad()
def test_each_row_runs_its_own_count(variant, opts):
    """A batch with per-row lengths gives every row the logits it gets alone at its count."""
    m = tiny_model(variant, **opts, **POLICY).train()  # training mode: prc would sample without lengths
    x = torch.randint(0, 256, (4, 12), generator=torch.Generator().manual_seed(0))
    x[2] = x[0]  # the same tokens at two lengths: only the loop count (2 against 5) tells their logits apart
    lengths = torch.tensor([1, 4, 8, 2])
    out = m(Batch(x, lengths=lengths)).logits
    m.eval()
    for i, n in enumerate(lengths.tolist()):
        alone = m(x[i : i + 1], n_loops=m.loops_for_length(n)).logits
        torch.testing.assert_close(out[i : i + 1], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[0], out[2], atol=1e-4)
    torch.testing.assert_close(m(Batch(x, lengths=lengths), n_loops=3).logits, m(x, n_loops=3).logits)  # explicit wins


def test_stream_reports_each_rows_task_length():
    tok = ByteTokenizer()
    s = AlgoStream(tok, ["parity"], seq_len=24, batch_size=16, seed=0, packing="single")
    batch = s.next_batch()
    x, lengths = batch.tokens, batch.lengths
    for row, n in zip(x.tolist(), lengths.tolist()):
        text = bytes(t for t in row if t < 256).decode()
        assert text.startswith(TASKS["parity"].tag) and text.count("0") + text.count("1") == n + 1  # bits + answer
    packed = AlgoStream(tok, ["parity"], seq_len=64, batch_size=4, seed=0)
    lengths = packed.next_batch().lengths
    assert bool((lengths >= 1).all()) and int(lengths.max()) <= 8


def test_evaluation_runs_each_cell_at_its_count(monkeypatch):
    m = tiny_model("shared_loop", **POLICY)
    seen = []
    real = algorithmic.read_examples

    def spy(model, tokenizer, pairs, **kw):
        seen.append((kw["n_loops"], {len(p.split("=")[0]) - len("PAR:") for p, _ in pairs}))
        return real(model, tokenizer, pairs, **kw)

    monkeypatch.setattr(algorithmic, "read_examples", spy)
    res = algorithmic.run_grid(m, ByteTokenizer(), ["parity"], problems=algorithmic.drawn(2, 0), max_new_tokens=3)
    assert sorted(seen) == [(3, {4}), (5, {8, 16, 32, 64})]
    cells = res["tasks"]["parity"]["lengths"]
    assert [cells[n]["loops"] for n in ("4", "8", "32")] == [3, 5, 5]
    swept = algorithmic.run_grid(m, ByteTokenizer(), ["parity"], problems=algorithmic.drawn(2, 0), max_new_tokens=3, n_loops=2)
    assert "loops" not in swept["tasks"]["parity"]["lengths"]["4"] and seen[-1][0] == 2


def test_training_passes_row_lengths(tmp_path, monkeypatch):
    tok = ByteTokenizer()
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), alg_tokens=3 * 8 * 24, total_tokens=3 * 8 * 24, seq_len=24,
                      batch_size=8,
                      eval_every_tokens=3 * 8 * 24, eval_samples=2, eval_max_new_tokens=3, threads=1, progress=False,
                      alg_tasks=("parity",), packing="single")
    t = Trainer(model_config("tiny", V, "shared_loop", **POLICY), cfg, tok)
    calls = []
    real = type(t.model).forward

    def spy(self, batch, *args, **kw):
        calls.append(batch.lengths.tolist() if isinstance(batch, Batch) and batch.lengths is not None else None)
        return real(self, batch, *args, **kw)

    monkeypatch.setattr(type(t.model), "forward", spy)
    t.run()
    trained = [c for c in calls if c is not None]
    assert len(trained) >= 3 and all(1 <= n <= 8 for c in trained for n in c)
    final = json.loads((tmp_path / "run" / "summary.json").read_text())["final_eval"]
    assert final["tasks"]["parity"]["lengths"]["64"]["loops"] == 5
