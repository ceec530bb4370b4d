"""Exact resume: a run that crashes at a step and is resumed ends bit for bit where an uninterrupted
run ends (weights, metrics and final evaluation), whatever the variant, curriculum or phase; a
damaged newest checkpoint falls back to the previous one; a killed writer's temporaries are cleared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from looplab.config import TrainConfig, model_config
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.io import read_payload
from looplab.train.trainer import Trainer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TIMING = ("tokens_per_s", "train_seconds")  # wall-clock figures, never equal across runs


class Crash(Exception):
    """Stands in for SIGKILL: the process stops between two steps, with nothing flushed."""


def config(out: Path, **kw) -> TrainConfig:
    base = dict(output_dir=str(out), alg_tokens=24 * 8 * 64, seq_len=64, batch_size=8, eval_every_tokens=8 * 8 * 64,
                eval_samples=2, eval_max_new_tokens=4, save_every_steps=5, threads=1, progress=False, log_every=2,
                alg_tasks=("copy", "successor", "parity"))
    base.update(kw)
    base.setdefault("total_tokens", base["alg_tokens"])
    return TrainConfig(**base)


def trainer(cfg: TrainConfig, variant: str, options: dict | None = None, **kw) -> Trainer:
    tok = ByteTokenizer()
    return Trainer(model_config("tiny", tok.vocab_size, variant, **(options or {})), cfg, tok, **kw)


def crash_at(monkeypatch, step: int) -> None:
    real = Trainer.train_step

    def step_or_crash(self):
        if self.step == step:
            raise Crash
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", step_or_crash)


def run_state(out: Path) -> tuple[str, list[dict], dict]:
    digest = read_payload(out / "last_model.pt")["digest"]
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((out / "metrics.json").read_text())]
    return digest, rows, json.loads((out / "summary.json").read_text())["final_eval"]


CASES = {  # variant, model options, training options
    "baseline": ("baseline", {}, {}),
    "prc draws from torch's generator": ("prc", dict(train_recur_mean=2.0), dict(alg_tasks=("copy",))),
    "dag curriculum with jitter": ("baseline", {}, dict(use_task_curriculum=True, task_curriculum_strategy="dag",
                                                    curriculum_every=3, curriculum_cooldown=3, curriculum_samples=4,
                                                    alg_tasks=("successor", "addition", "copy", "reverse"))),
    "split curriculum with replay": ("baseline", {}, dict(alg_tokens=10 * 8 * 64, total_tokens=24 * 8 * 64,
                                                      lang_data=str(FIXTURES / "little_stories.txt"), alg_replay=0.3)),
    "gradient accumulation": ("baseline", {}, dict(grad_accum=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_crash_and_resume_is_bitwise_equal(case, tmp_path, monkeypatch):
    variant, options, kw = CASES[case]
    if "lang_data" in kw:
        kw = {**kw, "lang_cache_dir": str(tmp_path / "cache")}
    trainer(config(tmp_path / "ref", **kw), variant, options).run()
    with monkeypatch.context() as m:
        crash_at(m, 13)  # between the checkpoints of steps 10 and 15: steps 11-13 are trained twice
        with pytest.raises(Crash):
            trainer(config(tmp_path / "run", **kw), variant, options).run()
    assert read_payload(tmp_path / "run" / "last_model.pt")["train_state"]["step"] == 10
    trainer(config(tmp_path / "run", **kw), variant, options, resume=True).run()
    assert run_state(tmp_path / "run") == run_state(tmp_path / "ref")


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, monkeypatch, capsys):
    trainer(config(tmp_path / "ref"), "baseline").run()
    with monkeypatch.context() as m:
        crash_at(m, 13)
        with pytest.raises(Crash):
            trainer(config(tmp_path / "run"), "baseline").run()
    last = tmp_path / "run" / "last_model.pt"
    assert read_payload(tmp_path / "run" / "last_model.prev.pt")["train_state"]["step"] == 8  # eval at 8, saves at 5, 10
    last.write_bytes(last.read_bytes()[:-100])  # truncated
    trainer(config(tmp_path / "run"), "baseline", resume=True).run()
    assert "last_model.pt' is truncated" in capsys.readouterr().err
    assert run_state(tmp_path / "run") == run_state(tmp_path / "ref")


def test_both_checkpoints_damaged_is_an_error(tmp_path):
    trainer(config(tmp_path / "run", alg_tokens=12 * 8 * 64), "baseline").run()
    for name in ("last_model.pt", "last_model.prev.pt"):
        path = tmp_path / "run" / name
        path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(LooplabError, match="truncated, corrupt"):
        trainer(config(tmp_path / "run", alg_tokens=12 * 8 * 64), "baseline", resume=True)


def test_tampered_training_state_fails_the_checksum(tmp_path):
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64), "baseline").run()
    path = tmp_path / "run" / "last_model.pt"
    payload = torch.load(path, weights_only=True)
    payload["train_state"]["step"] = 99  # weights untouched, so only the payload checksum can tell
    torch.save(payload, path)
    with pytest.raises(LooplabError, match="training state or metadata was modified"):
        read_payload(path)


def test_resume_clears_a_killed_writers_temporaries(tmp_path):
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64), "baseline").run()
    stale = tmp_path / "run" / ".last_model.pt.tmp-99999"
    stale.write_bytes(b"half a checkpoint")
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64), "baseline", resume=True)
    assert not stale.exists()


class OtherBytes(ByteTokenizer):
    """Same vocabulary size, different identity (as a retrained tokenizer would have)."""

    @property
    def fingerprint(self) -> str:
        return "another"


def test_resume_refuses_another_tokenizer(tmp_path):
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64), "baseline").run()
    tok = OtherBytes()
    with pytest.raises(LooplabError, match="was trained with tokenizer bytes"):
        Trainer(model_config("tiny", tok.vocab_size, "baseline"), config(tmp_path / "run", alg_tokens=6 * 8 * 64),
                tok, resume=True)


def test_resume_with_other_training_flags_warns(tmp_path, capsys):
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64), "baseline").run()
    capsys.readouterr()
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64, eval_samples=3), "baseline", resume=True)
    assert capsys.readouterr().err == ""  # evaluation settings do not change the trajectory
    trainer(config(tmp_path / "run", alg_tokens=6 * 8 * 64, lr=3e-3), "baseline", resume=True)
    err = capsys.readouterr().err
    assert "--lr 0.001 -> 0.003" in err and "will not equal an uninterrupted run" in err


def test_evaluation_never_changes_training(tmp_path):
    """prc's evaluation draws its random initial state from torch's generator; how often a run
    evaluates must not change the weights it trains to."""
    digests = []
    for every in (2, 8):
        out = tmp_path / f"every{every}"
        trainer(config(out, alg_tokens=8 * 8 * 64, eval_every_tokens=every * 8 * 64, save_every_steps=0,
                       alg_tasks=("copy",)), "prc", dict(train_recur_mean=2.0, state_init="random")).run()
        digests.append(read_payload(out / "last_model.pt")["digest"])
    assert digests[0] == digests[1]
