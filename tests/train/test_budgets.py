"""Budgets that finish and verdicts that survive review (issue 30): the warmup-stable-decay schedule and
the decay a competence stop starts, the time cap flagged as such, competence on every IID cell (screened,
then confirmed) with the competent checkpoint kept, and the FLOPs a length-loop arm really executes."""

from __future__ import annotations

import json

import pytest
import torch

from looplab.checkpoint import load_checkpoint
from looplab.config import TrainConfig, model_config
from looplab.data.batch import Batch
from looplab.data.tokenizer import ByteTokenizer
from looplab.models import build_model
from looplab.train.data import TaskData
from looplab.train.optim import decay_window, lr_at
from looplab.train.trainer import train
from tests.helpers import V, tiny_model
from tests.train.test_competence import B, T, run

BY_LENGTH = dict(loops_per_length=1.0, loops_cap=8)  # n loops for n bits


def hand_flops(m: torch.nn.Module, loops: int, seq_len: int) -> int:
    """shared_loop's training FLOPs per token at `loops` loops, counted by hand: 6 per weight applied (the
    blocks once per loop, the rest and the output head once) plus causal attention, 6 d T per block applied."""
    blocks = sum(p.numel() for p in m.blocks.parameters())
    once = sum(p.numel() for p in m.parameters()) - m.embedding_params - blocks + m.head.weight.numel()
    per_loop = 6 * blocks + 6 * len(m.blocks) * m.cfg.d_model * seq_len
    return 6 * once + loops * per_loop


def test_a_length_loop_batch_costs_its_largest_count():
    m = tiny_model("shared_loop", **BY_LENGTH).train()
    x = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(0))
    aux = m(Batch(x, lengths=torch.tensor([2, 5, 3]))).aux
    assert aux["loops_run"] == 5 and aux["loops_mean"] == pytest.approx(10 / 3)
    assert m.realised_flops_per_token(aux, 12) == hand_flops(m, 5, 12)
    assert m.cost(12)["flops_per_token"] == hand_flops(m, m.n_loops, 12) < hand_flops(m, 5, 12)  # nominal: 3 loops


def test_a_run_records_the_flops_it_executed(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), alg_tokens=3 * 8 * 24, total_tokens=3 * 8 * 24, seq_len=24,
                      batch_size=8, eval_every_tokens=3 * 8 * 24, eval_samples=2, eval_max_new_tokens=3, threads=1,
                      progress=False, alg_tasks=("parity",), packing="single", log_every=1)
    mcfg = model_config("tiny", V, "shared_loop", d_model=32, n_head=2, n_kv_head=2, **BY_LENGTH)
    summary = train(mcfg, cfg, ByteTokenizer())
    rows = [r for r in json.loads((tmp_path / "run" / "metrics.json").read_text()) if "aux/loops_run" in r]
    assert len(rows) == 3 and any(r["aux/loops_run"] > 3 for r in rows)  # parity up to 8 bits: up to 8 loops
    m = build_model(mcfg)
    assert summary["realised_flops"] == sum(hand_flops(m, int(r["aux/loops_run"]), 24) * 8 * 24 for r in rows)
    assert summary["realised_flops_per_token"] == pytest.approx(summary["realised_flops"] / summary["tokens"])


def test_wsd_warms_up_holds_then_decays_to_the_floor():
    cfg = TrainConfig(total_tokens=100 * 64, alg_tokens=100 * 64, seq_len=16, batch_size=4, warmup_tokens=10 * 64,
                      lr=1e-3, min_lr_ratio=0.1, schedule="wsd", decay_fraction=0.2)
    lrs = [lr_at(s, cfg) for s in range(cfg.total_steps)]
    assert lrs[0] == pytest.approx(1e-4) and all(a < b for a, b in zip(lrs[:9], lrs[1:10]))  # warm-up
    assert lrs[9:80] == [pytest.approx(1e-3)] * 71  # stable
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:])) and lrs[-1] == pytest.approx(1e-4)  # decay to the floor
    assert decay_window(cfg) == (80, 100) and decay_window(cfg, 30) == (30, 36) and decay_window(cfg, 90) == (80, 100)
    assert lr_at(29, cfg, (30, 36)) == pytest.approx(1e-3) and lr_at(35, cfg, (30, 36)) == pytest.approx(1e-4)


def test_a_competence_stop_is_followed_by_the_decay(tmp_path):
    summary = run(tmp_path, "wsd", competence=0.95, schedule="wsd", decay_fraction=0.2, log_every=1)
    comp, steps = summary["competence"], summary["steps"]
    assert comp["reached"] and summary["stopped_by"] == "competence"
    assert steps == comp["step"] + max(1, round(0.2 * comp["step"])) < 200  # decayed, then stopped
    rows = [r for r in json.loads((tmp_path / "wsd" / "metrics.json").read_text()) if "lr" in r]
    assert rows[-1]["step"] == steps and rows[-1]["lr"] == pytest.approx(3e-3 * 0.1)  # the last step at the floor
    assert next(r for r in rows if r["step"] == comp["step"])["lr"] == pytest.approx(3e-3)  # flat until competent
    assert summary["schedule"]["decay"] == [comp["step"], steps]
    assert summary["scored"]["step"] in (comp["step"], steps)  # the competent checkpoint (annealed when competent)


def test_a_run_the_time_cap_stops_is_flagged(tmp_path):
    summary = run(tmp_path, "capped", max_minutes=1e-9)
    assert summary["stopped_by"] == "time_cap" and summary["tokens"] == T * B
    assert run(tmp_path, "budget", alg_tokens=20 * T * B, total_tokens=20 * T * B)["stopped_by"] == "token_budget"


def test_competence_needs_every_cell_on_the_full_count(tmp_path, monkeypatch):
    """Evaluation 1: the mean (0.97) is above 0.95 but one cell is not; 2: the screen passes, the full count
    does not; 3: both pass. The run stops there and keeps that checkpoint."""
    low = {"const": {"1": 1.0, "2": 1.0, "3": 0.9}}
    high = {"const": {"1": 1.0, "2": 1.0, "3": 1.0}}
    script, calls = iter([low, high, low, high, high]), []

    def scripted(self, model, *, samples, seed):
        calls.append(samples)
        return next(script)

    monkeypatch.setattr(TaskData, "cell_accuracy", scripted)
    summary = run(tmp_path, "cells", competence=0.95, screen_samples=4, eval_samples=16)
    assert calls == [4, 4, 16, 4, 16]
    assert summary["competence"]["step"] == 30 == summary["steps"] and summary["competence"]["per"] == "IID cell"
    assert summary["scored"] == {"step": 30, "tokens": 30 * T * B, "why": "first competent evaluation"}
    assert load_checkpoint(tmp_path / "cells" / "best_model.pt").meta["step"] == 30
    evals = [m for m in json.loads((tmp_path / "cells" / "metrics.json").read_text()) if "eval_mean_acc" in m]
    assert [e["cells_below_competence"] for e in evals] == [1, 1, 0] and evals[0]["eval_mean_acc"] > 0.95
