"""End to end through the real entry points: train.py, eval_hub.py, and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import GENERIC, LOOPED

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    proc = run("train.py", "--model_size", "tiny", "--variant", "baseline", "--alg_tokens", "40960",
               "--alg_tasks", "copy", "successor", "--seq_len", "128", "--batch_size", "16",
               "--eval_every_tokens", "20480", "--eval_samples", "8", "--output_dir", str(out), "--no_progress")
    assert proc.returncode == 0, proc.stderr
    return out


def test_train_writes_every_artefact(trained):
    for name in ("best_model.pt", "last_model.pt", "config.json", "metrics.json", "summary.json",
                 "loss.png", "accuracy.png"):
        assert (trained / name).stat().st_size > 0, name
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["variant"] == "baseline" and config["tasks"] == ["copy", "successor"]
    assert config["tokenizer"]["name"] == "bytes"
    metrics = json.loads((trained / "metrics.json").read_text())
    losses = [m for m in metrics if "loss" in m]
    assert losses and all({"step", "tokens", "phase"} <= m.keys() for m in metrics)
    assert losses[-1]["loss"] < losses[0]["loss"]
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["tokens"] == 40960 and summary["tokens_per_s"] > 0
    assert summary["cost"]["params"] > 0 and set(summary["final_eval"]["tasks"]) == {"copy", "successor"}


def test_eval_hub_writes_results(trained, tmp_path):
    proc = run("eval_hub.py", "--checkpoint", str(trained / "best_model.pt"), "--suite", "algorithmic",
               "--out_dir", str(tmp_path), "--samples", "4", "--tasks", "copy")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "results_algorithmic.json").read_text())
    meta = doc["metadata"]
    for key in ("commit", "dirty", "seed", "decoding", "grid_version", "model_config", "tokenizer", "checkpoint"):
        assert key in meta
    cells = doc["results"]["tasks"]["copy"]["lengths"]
    assert {c["split"] for c in cells.values()} == {"iid", "ood"}
    assert all(c["n"] == 4 and 0 <= c["acc"] <= 1 for c in cells.values())


@pytest.mark.parametrize("args, needles", [
    (["--variant", "nope"], ["invalid choice: 'nope'", "baseline"]),
    (["--model_size", "7T"], ["invalid choice: '7T'", "tiny", "1B-16k"]),
    (["--alg_tasks", "nope"], ["unknown task 'nope'", "parity"]),
    (["--alg_tokens", "2000", "--total_tokens", "1000"], ["larger than --total_tokens"]),
])
def test_train_bad_input(args, needles, tmp_path):
    out = tmp_path / "never"
    assert_one_line_error(run("train.py", "--output_dir", str(out), *args), *needles)
    assert not out.exists()


def test_train_refuses_to_overwrite_a_run(trained):
    before = (trained / "summary.json").read_bytes()
    proc = run("train.py", "--alg_tokens", "8192", "--seq_len", "64", "--output_dir", str(trained))
    assert_one_line_error(proc, "already holds a run", "--overwrite")
    assert (trained / "summary.json").read_bytes() == before


def test_eval_missing_checkpoint(tmp_path):
    assert_one_line_error(run("eval_hub.py", "--checkpoint", str(tmp_path / "none.pt")), "does not exist")


def test_eval_corrupt_checkpoints(trained, tmp_path):
    data = (trained / "best_model.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run("eval_hub.py", "--checkpoint", str(truncated)), "truncated, corrupt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    assert_one_line_error(run("eval_hub.py", "--checkpoint", str(garbage)), "garbage.pt")


def test_eval_suite_without_its_data(trained):
    assert_one_line_error(run("eval_hub.py", "--checkpoint", str(trained / "best_model.pt"), "--suite", "custom"),
                          "--suite custom needs at least one --data PATH")
    assert_one_line_error(run("eval_hub.py", "--checkpoint", "x.pt", "--suite", "nope"), "invalid choice")


@pytest.mark.parametrize("variant", [v for v in GENERIC if v != "baseline"])  # baseline: the fixture above
def test_every_variant_trains_and_evaluates(variant, tmp_path):
    out = tmp_path / variant
    proc = run("train.py", "--variant", variant, "--alg_tokens", "4096", "--alg_tasks", "successor",
               "--seq_len", "64", "--batch_size", "8", "--eval_samples", "4", "--output_dir", str(out),
               "--no_progress")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == variant and summary["cost"]["flops_per_token"] > 0
    args = ["--checkpoint", str(out / "best_model.pt"), "--samples", "2", "--out_dir", str(tmp_path / "ev")]
    if variant in LOOPED:
        args += ["--n_loops", "1,3"]
    proc = run("eval_hub.py", *args)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "ev" / "results_algorithmic.json").read_text())["results"]
    if "--n_loops" in args:
        assert set(results["loops"]) == {"1", "3"}


def test_eval_hub_suite_all_is_valid(trained, tmp_path):
    import jsonschema

    from looplab.eval.hub import load_schema

    proc = run("eval_hub.py", "--checkpoint", str(trained / "best_model.pt"), "--suite", "all", "--out_dir",
               str(tmp_path), "--samples", "2", "--needle_lengths", "96,128", "--needle_depths", "0", "1",
               "--needle_trials", "2", "--ppl_tokens", "200", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "selftest: 5/5 checks pass" in proc.stdout and "longctx: needle acc by length 96" in proc.stdout
    doc = json.loads((tmp_path / "results_all.json").read_text())
    jsonschema.validate(doc, load_schema())
    assert doc["metadata"]["settings"]["needle_lengths"] == [96, 128]


def test_eval_hub_bad_needle_flags(trained):
    ckpt = str(trained / "best_model.pt")
    assert_one_line_error(run("eval_hub.py", "--checkpoint", ckpt, "--suite", "longctx", "--needle_lengths", "1k"),
                          "--needle_lengths expects numbers")
    assert_one_line_error(run("eval_hub.py", "--checkpoint", ckpt, "--suite", "longctx", "--needle_depths", "2"),
                          "--needle_depths must be fractions")


def test_report_command(trained, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "looplab.cli", "report", str(trained), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "REPORT.md").read_text()
    assert "| `baseline` | 1 (0) |" in md and (tmp_path / "loss.png").exists()
    bad = subprocess.run([sys.executable, "-m", "looplab.cli", "report", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert_one_line_error(bad, "no run directories")
