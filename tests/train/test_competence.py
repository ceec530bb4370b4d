"""Competence first: a run stops at the first evaluation where every task reaches the target, says
when, and scores a held-out IID validation loss that the learning-rate sweep selects on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from looplab.config import TrainConfig, model_config
from looplab.data.packing import AlgoStream
from looplab.data.tokenizer import ByteTokenizer
from looplab.train.data import ALG_VAL_SEED
from looplab.train.trainer import train

T, B = 16, 8


def constant_task(path: Path) -> Path:
    """A task file whose answer is always `z`: learnable in a few dozen steps."""
    rows = [{"task": "const", "length": n, "prompt": "Q:" + "ab"[i % 2] * n + "=", "target": "z"}
            for n in (1, 2, 3) for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(tmp_path: Path, name: str, **kw) -> dict:
    tok = ByteTokenizer()
    cfg = TrainConfig(**{**dict(output_dir=str(tmp_path / name), alg_tokens=200 * T * B, total_tokens=200 * T * B,
                                seq_len=T, batch_size=B, alg_tasks=("none",),
                                task_files=(str(constant_task(tmp_path / "const.jsonl")),),
                                eval_every_tokens=10 * T * B, eval_samples=4, eval_max_new_tokens=4, lr=3e-3,
                                warmup_tokens=T * B, threads=1, progress=False, packing="single"), **kw})
    return train(model_config("tiny", tok.vocab_size, d_model=32, n_layer=1, n_head=2, n_kv_head=2), cfg, tok)


def test_run_stops_once_competent_and_records_when(tmp_path):
    summary = run(tmp_path, "stop", competence=0.95)
    comp = summary["competence"]
    assert comp["reached"] and comp["threshold"] == 0.95
    assert comp["tokens"] == summary["tokens"] < 200 * T * B  # stopped at that evaluation, before the budget
    evals = [m for m in json.loads((tmp_path / "stop" / "metrics.json").read_text()) if "eval_mean_acc" in m]
    assert evals[-1]["eval_acc/const"] >= 0.95 and all(e["eval_acc/const"] < 0.95 for e in evals[:-1])
    assert evals[-1]["tokens"] == comp["tokens"]


def test_without_a_target_the_whole_budget_trains(tmp_path):
    summary = run(tmp_path, "full", alg_tokens=40 * T * B, total_tokens=40 * T * B)
    assert summary["tokens"] == 40 * T * B and "competence" not in summary
    assert 0 <= summary["final_alg_val_loss"] < 10
    rows = [m for m in json.loads((tmp_path / "full" / "metrics.json").read_text()) if "alg_val_loss" in m]
    assert len(rows) == 4 and rows[-1]["alg_val_loss"] < rows[0]["alg_val_loss"]  # the loss it learned


def test_validation_batches_do_not_depend_on_the_run_seed():
    tok = ByteTokenizer()
    a = AlgoStream(tok, ["parity"], seq_len=T, batch_size=B, seed=ALG_VAL_SEED).next_batch()
    b = AlgoStream(tok, ["parity"], seq_len=T, batch_size=B, seed=ALG_VAL_SEED).next_batch()
    c = AlgoStream(tok, ["parity"], seq_len=T, batch_size=B, seed=0).next_batch()
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
