"""The trainer's curricula end to end: the phase switch, replay, the task curriculum's checkpointed
state, and task files from training through `--suite custom`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from looplab.cli import eval_main, train_main
from looplab.config import EvalConfig, TrainConfig, model_config
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.eval.hub import evaluate_checkpoint
from looplab.train.trainer import Trainer, train
from tests.fixtures.make_task_files import write_task_file

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "little_stories.txt"
T, B = 32, 4  # 128 tokens per step


def config(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = dict(output_dir=str(tmp_path / name), alg_tokens=6 * T * B, total_tokens=6 * T * B, seq_len=T,
                batch_size=B, alg_tasks=("successor",), eval_every_tokens=3 * T * B, eval_samples=2,
                eval_max_new_tokens=8, log_every=1, threads=1, progress=False, warmup_tokens=T * B,
                lang_cache_dir=str(tmp_path / "cache"))
    return TrainConfig(**{**base, **kw})


def run(cfg: TrainConfig, **kw):
    tok = ByteTokenizer()
    return train(model_config("tiny", tok.vocab_size, d_model=32, n_layer=1, n_head=2, n_kv_head=2), cfg, tok, **kw)


def test_phase_switch_at_alg_tokens_and_replay(tmp_path):
    cfg = config(tmp_path, "split", total_tokens=10 * T * B, lang_data=str(FIXTURE), alg_replay=0.25)
    summary = run(cfg)
    rows = [m for m in json.loads((tmp_path / "split" / "metrics.json").read_text()) if "loss" in m]
    assert [m["phase"] for m in rows] == ["algorithmic"] * 6 + ["language"] * 4
    assert all((m["tokens"] <= cfg.alg_tokens) == (m["phase"] == "algorithmic") for m in rows)
    assert summary["phases"] == {"algorithmic_steps": 6, "language_steps": 4, "replay_steps": 1,
                                 "switch_tokens": 6 * T * B}
    assert summary["final_lang_val_loss"] > 0 and (tmp_path / "split" / "loss.png").exists()


def test_language_phase_without_data_is_one_line_error(tmp_path, capsys):
    with pytest.raises(LooplabError, match="needs --lang_data"):
        config(tmp_path, "x", total_tokens=10 * T * B)
    rc = train_main(["--alg_tokens", "10000", "--total_tokens", "50000", "--output_dir", str(tmp_path / "y")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--lang_data" in err and "\n" not in err and not (tmp_path / "y").exists()


def test_curriculum_state_is_checkpointed_and_restored(tmp_path):
    cfg = config(tmp_path, "cur", alg_tasks=("successor", "addition", "copy"), use_task_curriculum=True,
                 task_curriculum_strategy="dag", curriculum_every=2, curriculum_samples=2, curriculum_cooldown=0)
    summary = run(cfg)
    out = tmp_path / "cur"
    payload = torch.load(out / "last_model.pt", weights_only=True)
    saved = json.loads(payload["train_state"]["curriculum"])
    assert saved["strategy"] == "dag" and sorted(saved["tasks"]) == ["addition", "copy", "successor"]
    assert summary["curriculum"]["events"] == saved["events"]
    rows = [m for m in json.loads((out / "metrics.json").read_text()) if "curriculum_active" in m]
    assert [m["step"] for m in rows] == [2, 4, 6] and rows[0]["curriculum/addition"] == 0  # locked: 0
    assert (out / "curriculum.png").exists()
    tok = ByteTokenizer()
    mcfg = model_config("tiny", tok.vocab_size, d_model=32, n_layer=1, n_head=2, n_kv_head=2)
    resumed = Trainer(mcfg, cfg, tok, resume=True)
    assert resumed.step == 6 and resumed.curriculum.state_dict() == saved
    assert resumed.data.state_dict() == json.loads(payload["train_state"]["stream"])


def test_task_files_train_and_evaluate_end_to_end(tmp_path, capsys):
    train_file = write_task_file(tmp_path / "train.jsonl", [2, 3], per_length=30)
    long_file = write_task_file(tmp_path / "long.jsonl", [3, 6], per_length=5, seed=1)
    cfg = config(tmp_path, "tf", task_files=(str(train_file),))
    summary = run(cfg)
    assert set(summary["final_eval"]["tasks"]) == {"successor", "sort_letters", "rotate_left"}
    ckpt = str(tmp_path / "tf" / "last_model.pt")
    path, doc = evaluate_checkpoint(ckpt, EvalConfig(suite="custom", data=(str(long_file),), samples=4,
                                                     max_new_tokens=8))
    assert path.name == "results_custom.json" and "tokenizer" in doc["metadata"]
    cells = doc["results"]["tasks"]["sort_letters"]["lengths"]
    assert {k: c["split"] for k, c in cells.items()} == {"3": "iid", "6": "ood"}
    assert all(c["n"] == 4 and 0 <= c["exact_match"] <= c["token_acc"] <= 1 for c in cells.values())
    rc = eval_main(["--checkpoint", ckpt, "--suite", "custom", "--data", str(long_file), "--samples", "2",
                    "--out_dir", str(tmp_path / "ev")])
    assert rc == 0 and (tmp_path / "ev" / "results_custom.json").exists()
    assert eval_main(["--checkpoint", ckpt, "--suite", "custom", "--out_dir", str(tmp_path / "ev")]) == 2
    assert "--data" in capsys.readouterr().err


def test_task_files_only_through_the_command(tmp_path, capsys):
    """`--alg_tasks none`: the task file alone; a run with no OOD lengths prints n/a, not a traceback."""
    train_file = write_task_file(tmp_path / "train.jsonl", [2], per_length=20)
    common = ["--model_size", "tiny", "--model_opt", "d_model=32", "--model_opt", "n_layer=1", "--seq_len", "32",
              "--batch_size", "4", "--alg_tokens", "256", "--eval_every_tokens", "128", "--eval_samples", "2",
              "--threads", "1", "--no_progress"]
    assert train_main([*common, "--alg_tasks", "none", "--output_dir", str(tmp_path / "no")]) == 2
    assert "--task_file" in capsys.readouterr().err and not (tmp_path / "no").exists()
    rc = train_main([*common, "--alg_tasks", "none", "--task_file", str(train_file), "--output_dir", str(tmp_path / "tf")])
    out = capsys.readouterr().out
    assert rc == 0 and "ood acc n/a" in out
    summary = json.loads((tmp_path / "tf" / "summary.json").read_text())
    assert summary["tasks"] == ["sort_letters", "rotate_left"] and summary["final_eval"]["ood_acc"] is None
