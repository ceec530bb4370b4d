"""End to end through the entry points train.py, eval_hub.py and `looplab`, and their one-line errors.

They run in this process (`call`: the entry point's main(argv), its exit status and output); the disk
full test in test_cli_errors.py runs train.py and test_report_command runs `looplab` as commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from looplab.cli import eval_main, main, train_main
from tests.helpers import GENERIC, LOOPED, TRAINED_TASKS, TRAINED_TOKENS

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"train.py": train_main, "eval_hub.py": eval_main, "looplab": main}
QUIET = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # Python hides these


def run(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def call(capsys: pytest.CaptureFixture, entry: str, *args: str) -> subprocess.CompletedProcess:
    """`entry`'s main(argv) in this process, read as `run` reads a command: its exit status (argparse's
    SystemExit included), stdout, and stderr with the warnings a command would print there. An exception
    that escapes main (a command's traceback) fails the test."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = ENTRY_POINTS[entry](list(args))
        except SystemExit as e:
            code = e.code
    out, err = capsys.readouterr()
    err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                   for w in caught if not issubclass(w.category, QUIET))
    return subprocess.CompletedProcess([entry, *args], code, out, err)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.fixture
def trained(trained_run) -> Path:
    """The session's trained run (tests/conftest.py), which these tests read and never change."""
    return trained_run


def test_train_writes_every_artefact(trained):
    for name in ("best_model.pt", "last_model.pt", "config.json", "metrics.json", "summary.json",
                 "loss.png", "accuracy.png"):
        assert (trained / name).stat().st_size > 0, name
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["variant"] == "baseline" and config["tasks"] == TRAINED_TASKS
    assert config["tokenizer"]["name"] == "bytes"
    metrics = json.loads((trained / "metrics.json").read_text())
    losses = [m for m in metrics if "loss" in m]
    assert losses and all({"step", "tokens", "phase"} <= m.keys() for m in metrics)
    assert losses[-1]["loss"] < losses[0]["loss"]
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["tokens"] == TRAINED_TOKENS and summary["tokens_per_s"] > 0
    assert summary["cost"]["params"] > 0 and set(summary["final_eval"]["tasks"]) == set(TRAINED_TASKS)


def test_eval_hub_writes_results(trained, tmp_path, capsys):
    proc = call(capsys, "eval_hub.py", "--checkpoint", str(trained / "best_model.pt"), "--suite", "algorithmic",
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
def test_train_bad_input(args, needles, tmp_path, capsys):
    out = tmp_path / "never"
    assert_one_line_error(call(capsys, "train.py", "--output_dir", str(out), *args), *needles)
    assert not out.exists()


def test_train_refuses_to_overwrite_a_run(trained, capsys):
    before = (trained / "summary.json").read_bytes()
    proc = call(capsys, "train.py", "--alg_tokens", "8192", "--seq_len", "64", "--output_dir", str(trained))
    assert_one_line_error(proc, "already holds a run", "--overwrite")
    assert (trained / "summary.json").read_bytes() == before


def test_eval_missing_checkpoint(tmp_path, capsys):
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", str(tmp_path / "none.pt")), "does not exist")


def test_eval_corrupt_checkpoints(trained, tmp_path, capsys):
    data = (trained / "best_model.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", str(truncated)), "truncated, corrupt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", str(garbage)), "garbage.pt")


def test_eval_suite_without_its_data(trained, tmp_path, capsys):
    out = tmp_path / "results"  # refused input leaves nothing behind: not even the results directory
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", str(trained / "best_model.pt"), "--suite",
                               "custom", "--out_dir", str(out)), "--suite custom needs at least one --data PATH")
    assert not out.exists()
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", "x.pt", "--suite", "nope"), "invalid choice")


@pytest.mark.parametrize("variant", [v for v in GENERIC if v != "baseline"])  # baseline: the shared run
def test_every_variant_trains_and_evaluates(variant, tmp_path, capsys):
    out = tmp_path / variant
    proc = call(capsys, "train.py", "--variant", variant, "--alg_tokens", "4096", "--alg_tasks", "successor",
               "--seq_len", "64", "--batch_size", "8", "--eval_samples", "4", "--output_dir", str(out),
               "--no_progress")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == variant and summary["cost"]["flops_per_token"] > 0
    args = ["--checkpoint", str(out / "best_model.pt"), "--samples", "2", "--out_dir", str(tmp_path / "ev")]
    if variant in LOOPED:
        args += ["--n_loops", "1,3"]
    proc = call(capsys, "eval_hub.py", *args)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "ev" / "results_algorithmic.json").read_text())["results"]
    if "--n_loops" in args:
        assert set(results["loops"]) == {"1", "3"}


def test_eval_hub_suite_all_is_valid(trained, tmp_path, capsys):
    import jsonschema

    from looplab.eval.hub import load_schema

    proc = call(capsys, "eval_hub.py", "--checkpoint", str(trained / "best_model.pt"), "--suite", "all", "--out_dir",
               str(tmp_path), "--samples", "2", "--needle_lengths", "96,128", "--needle_depths", "0", "1",
               "--needle_trials", "2", "--ppl_tokens", "200", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "selftest: 5/5 checks pass" in proc.stdout and "longctx: needle acc by length 96" in proc.stdout
    doc = json.loads((tmp_path / "results_all.json").read_text())
    jsonschema.validate(doc, load_schema())
    assert doc["metadata"]["settings"]["needle_lengths"] == [96, 128]


def test_eval_hub_bad_needle_flags(trained, tmp_path, capsys):
    ckpt, out = str(trained / "best_model.pt"), str(tmp_path / "results")
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", ckpt, "--out_dir", out, "--suite", "longctx",
                               "--needle_lengths", "1k"), "--needle_lengths expects numbers")
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", ckpt, "--out_dir", out, "--suite", "longctx",
                               "--needle_depths", "2"), "--needle_depths must be fractions")
    assert not (tmp_path / "results").exists()


def test_report_command(trained, tmp_path):
    """`looplab` as a command (python -m looplab.cli): a report of the shared run, then a one-line error."""
    proc = subprocess.run([sys.executable, "-m", "looplab.cli", "report", str(trained), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "REPORT.md").read_text()
    assert "| `baseline` | 1 (0) |" in md and (tmp_path / "loss.png").exists()
    bad = subprocess.run([sys.executable, "-m", "looplab.cli", "report", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert_one_line_error(bad, "no run directories")
