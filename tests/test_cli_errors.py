"""Bad input through the real commands, one case each: a one-line error, a non-zero exit, no
traceback, and nothing already written changed (the cases named by the fault-tolerance issue that
tests/test_cli.py does not already cover: unknown variant, size and task, inconsistent budgets,
a directory holding a run, missing/truncated/non-checkpoint files for eval_hub). The commands run in
this process (tests.test_cli.call) except the disk-full case, which limits a train.py process's writes;
the runs resumed here are copies of the session's trained run."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from looplab.checkpoint import save_checkpoint
from looplab.config import model_config
from looplab.data.tokenizer import ByteTokenizer
from looplab.models import build_model
from tests.helpers import TRAINED_ARGS
from tests.test_cli import REPO, assert_one_line_error, call

FLAGS = ["--model_size", "tiny", "--alg_tasks", "copy", "--seq_len", "64", "--batch_size", "16",
         "--eval_samples", "4", "--eval_max_new_tokens", "8", "--no_progress", "--threads", "1"]
SHORT = ["--alg_tokens", str(4 * 1024), "--eval_every_tokens", str(2 * 1024)]


def snapshot(directory: Path) -> dict[str, str]:
    """Every file's SHA-256: what 'nothing already written changed' is checked against."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def copy(trained_run, tmp_path) -> Path:
    """A copy of the session's trained run (resumed with its own flags, TRAINED_ARGS)."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


def test_unknown_tokenizer(tmp_path, capsys):
    out = tmp_path / "never"
    assert_one_line_error(call(capsys, "train.py", "--tokenizer", "nope.model", "--output_dir", str(out)),
                          "tokenizer 'nope.model' does not exist", "SentencePiece")
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--alg_tokens", "--total_tokens"])
def test_negative_token_budget(flag, tmp_path, capsys):
    out = tmp_path / "never"
    proc = call(capsys, "train.py", flag, "-4096", "--output_dir", str(out))
    assert_one_line_error(proc, flag)
    assert not out.exists()


def test_budget_smaller_than_one_batch(tmp_path, capsys):
    out = tmp_path / "never"
    proc = call(capsys, "train.py", "--alg_tokens", "100", "--seq_len", "64", "--batch_size", "16", "--output_dir", str(out))
    assert_one_line_error(proc, "smaller than one batch")
    assert not out.exists()


def test_batch_not_divisible_by_grad_accum(copy, capsys):
    before = snapshot(copy)
    proc = call(capsys, "train.py", *TRAINED_ARGS, "--grad_accum", "3", "--output_dir", str(copy), "--resume")
    assert_one_line_error(proc, "--batch_size 8 must be a multiple of processes x --grad_accum (1 x 3)")
    assert snapshot(copy) == before


def test_resume_with_another_tokenizer(copy, tmp_path, capsys):
    from tests.data.test_tokenizer import train_bpe_json

    tok = tmp_path / "tokenizer.json"
    tok.write_text(train_bpe_json(["<s>", "</s>", "<pad>"]))
    before = snapshot(copy)
    proc = call(capsys, "train.py", *TRAINED_ARGS, "--tokenizer", str(tok), "--output_dir", str(copy), "--resume")
    assert_one_line_error(proc, "was trained with tokenizer bytes (vocab 260)", "use the original --tokenizer")
    assert snapshot(copy) == before


def test_checkpoint_whose_tokenizer_does_not_fit_the_model(tmp_path, capsys):
    model = build_model(model_config("tiny", 300, "baseline"))  # 300 embedding rows, byte tokenizer has 260
    save_checkpoint(tmp_path / "misfit.pt", model, ByteTokenizer())
    assert_one_line_error(call(capsys, "eval_hub.py", "--checkpoint", str(tmp_path / "misfit.pt")),
                          "needs vocab_size 260 but the model has 300")


def test_resume_without_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert_one_line_error(call(capsys, "train.py", *FLAGS, *SHORT, "--output_dir", str(out), "--resume"),
                          "last_model.pt does not exist")
    assert list(out.iterdir()) == []


def test_resume_from_truncated_checkpoints(copy, capsys):
    for name in ("last_model.pt", "last_model.prev.pt"):
        data = (copy / name).read_bytes()
        (copy / name).write_bytes(data[: len(data) // 2])
    before = snapshot(copy)
    assert_one_line_error(call(capsys, "train.py", *TRAINED_ARGS, "--output_dir", str(copy), "--resume"),
                          "truncated, corrupt or not a looplab checkpoint")
    assert snapshot(copy) == before


def test_resume_from_a_file_that_is_not_a_checkpoint(copy, capsys):
    (copy / "last_model.pt").write_text("not a checkpoint")
    (copy / "last_model.prev.pt").unlink()
    before = snapshot(copy)
    assert_one_line_error(call(capsys, "train.py", *TRAINED_ARGS, "--output_dir", str(copy), "--resume"),
                          "last_model.pt")
    assert snapshot(copy) == before


def test_output_dir_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = call(capsys, "train.py", *FLAGS, *SHORT, "--output_dir", str(blocker / "run"))
    assert_one_line_error(proc, "is not writable", "Not a directory")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_output_dir_without_write_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_one_line_error(call(capsys, "train.py", *FLAGS, *SHORT, "--output_dir", str(locked)),
                              "is not writable")
    finally:
        locked.chmod(0o755)


def limit_file_size(limit: int):
    """A child whose writes past `limit` bytes fail (EFBIG) as on a full disk, instead of killing it."""
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return setup


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, capsys):
    """train.py as a command (its writes limited as on a full disk) resuming a run stopped at step 1."""
    out = tmp_path / "run"
    proc = call(capsys, "train.py", *FLAGS, *SHORT, "--output_dir", str(out), "--max_minutes", "0.00001")  # stops at step 1
    assert proc.returncode == 0, proc.stderr
    before = snapshot(out)
    cmd = [sys.executable, str(REPO / "train.py"), *FLAGS, *SHORT, "--output_dir", str(out), "--resume"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          preexec_fn=limit_file_size(1 << 20))  # the evaluation at step 2 writes ~2-6 MB checkpoints
    assert_one_line_error(proc, "could not write", "File too large", "is unchanged")
    assert snapshot(out) == before  # no checkpoint, metrics or temporary file changed or left behind
