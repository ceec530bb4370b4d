"""--log_to: trackers receive the scalars of metrics.json; TensorBoard's event file is read back."""

from __future__ import annotations

import json

import pytest

from looplab.config import LaunchConfig, TrainConfig, model_config
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.train.launch import launch
from looplab.train.trackers import TRACKERS, Tracker, make_tracker, scalars
from looplab.train.trainer import train


def tiny_run(tmp_path, log_to: str) -> TrainConfig:
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), alg_tokens=2048, total_tokens=2048, alg_tasks=("copy",),
                      seq_len=64, batch_size=8, log_every=1, eval_every_tokens=1024, eval_samples=2,
                      eval_max_new_tokens=8, threads=1, device="cpu", progress=False, log_to=log_to)
    tok = ByteTokenizer()
    train(model_config("tiny", tok.vocab_size, "baseline", n_layer=1), cfg, tok)
    return cfg


def test_scalars_keep_only_finite_numbers():
    row = {"step": 3, "tokens": 96, "phase": "algorithmic", "loss": 1.5, "ok": True, "events": [1],
           "eval_acc/copy": 0.25, "nan": float("nan")}
    assert scalars(row) == {"tokens": 96.0, "loss": 1.5, "eval_acc/copy": 0.25}


def test_registry_and_one_line_errors(tmp_path):
    assert set(TRACKERS) == {"none", "tensorboard", "wandb"}
    with pytest.raises(LooplabError, match="unknown log_to 'mlflow'; allowed: none, tensorboard, wandb"):
        launch(LaunchConfig(), TrainConfig(log_to="mlflow", output_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(LooplabError, match="allowed: none, tensorboard, wandb"):
        make_tracker("mlflow", tmp_path, {})
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(LooplabError, match="pip install wandb"):
            make_tracker("wandb", tmp_path, {})


def test_every_metrics_row_reaches_the_tracker_once(tmp_path, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setitem(TRACKERS, "none", type("Spy", (Tracker,), {"log": lambda self, row: seen.append(row)}))
    cfg = tiny_run(tmp_path, "none")
    assert seen == json.loads((tmp_path / "run" / "metrics.json").read_text()) and len(seen) >= cfg.total_steps


def test_tensorboard_event_file_holds_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tiny_run(tmp_path, "tensorboard")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in metrics:
        for name, value in scalars(row).items():
            expected.setdefault(name, []).append((row["step"], value))
    assert {"loss", "lr", "eval_mean_acc", "eval_acc/copy"} <= set(expected)
    assert set(events.Tags()["scalars"]) == set(expected)
    for name, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in points], name
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), name  # float32 on disk
