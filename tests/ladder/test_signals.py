"""Stopping a ladder with a signal sent to the ladder process alone: SIGTERM stops its lanes, records
what was interrupted, unlocks the directory and exits with one line; a SIGKILLed ladder takes its
lane workers with it; a run directory held by a live process is never worked on by a new ladder."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from looplab.cli import guarded, main
from looplab.errors import LooplabError
from looplab.ladder import LadderPreset, run_ladder
from looplab.ladder.lock import LOCK, check_free, run_lock
from looplab.ladder.procs import alive, descendants
from looplab.ladder.runs import RECORD, checkpoint_step, stage

REPO = Path(__file__).resolve().parents[2]
TOKENS = 24_576  # 64 steps of 16 x 24 tokens: a few seconds per run on one thread
PRESET = LadderPreset(
    name="signals", note="signal tests", size="tiny",
    train=dict(alg_tasks=("copy", "successor"), alg_tokens=TOKENS, total_tokens=TOKENS, seq_len=24, batch_size=16,
               packing="single", warmup_tokens=768, eval_every_tokens=TOKENS, eval_samples=4, save_every_steps=4),
    evaluation=dict(suite="algorithmic", samples=4), n_loops=(1, 2), threads=1, seeds=1,
)
VARIANTS = ("baseline", "shared_loop")


def child(out: str) -> None:
    """The ladder as the command line runs it (one line and an exit status on a stop), two lanes."""
    sys.exit(guarded(lambda: run_ladder(PRESET, variants=VARIANTS, out=out, jobs=2, stream=io.StringIO())))


def start(out: Path, new_session: bool = False) -> subprocess.Popen:
    # A shell starts a command with Ctrl-C at its default. A child inherits an ignored SIGINT from its
    # parent, and Python then never raises KeyboardInterrupt; so the child sets the default itself and
    # the Ctrl-C test does not depend on the test process's own disposition.
    script = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "sys.path.insert(0, sys.argv[2]); from tests.ladder.test_signals import child; child(sys.argv[1])")
    return subprocess.Popen([sys.executable, "-c", script, str(out), str(REPO)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def both_training(out: Path, proc: subprocess.Popen) -> None:
    """Wait until both lanes have written a checkpoint and train on (no summary yet)."""
    dirs = [out / "runs" / f"{v}_s0" for v in VARIANTS]
    deadline = time.monotonic() + 120
    while not all((d / "last_model.pt").exists() for d in dirs):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    assert not any((d / "summary.json").exists() for d in dirs)


def gone(pids: set[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def files(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}


def test_sigterm_stops_the_lanes_and_the_same_command_resumes(tmp_path):
    proc = start(tmp_path)
    both_training(tmp_path, proc)
    workers = descendants(proc.pid)
    assert len(workers) >= 3  # two lanes, the queue's manager (and multiprocessing's resource tracker)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    stopped_s = time.monotonic() - t0
    assert proc.returncode == 128 + signal.SIGTERM
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped by SIGTERM: interrupted ") and "rerun" in lines[0], err
    assert gone(workers, within=5.0), [p for p in workers if alive(p)]
    assert (tmp_path / LOCK).read_text() == ""  # stopped, not killed: no stale lock
    resume_at = {}  # the step each run resumes from (None: trained before the signal, scored again)
    for v in VARIANTS:
        d = tmp_path / "runs" / f"{v}_s0"
        record = json.loads((d / RECORD).read_text())
        assert record["state"] == "interrupted" and "SIGTERM" in record["error"]
        trained = stage(d, PRESET.suite) == "trained"  # a lane that was far ahead may have finished training
        resume_at[v] = None if trained else checkpoint_step(d)
        assert f"{v} s0 (trained; its scoring reruns)" in lines[0] if trained else \
            f"{v} s0 (resumes from step {resume_at[v]})" in lines[0] and resume_at[v] > 0
    check_free((tmp_path / "runs").iterdir())

    board = io.StringIO()  # the same command again: no stale lock, both runs resume where they stopped
    run_ladder(PRESET, variants=VARIANTS, out=str(tmp_path), jobs=2, stream=board)
    assert "stale lock" not in board.getvalue()
    for v in VARIANTS:
        d = tmp_path / "runs" / f"{v}_s0"
        attempts = json.loads((d / RECORD).read_text())["attempts"]
        assert [a["from_step"] for a in attempts] == [0] + ([] if resume_at[v] is None else [resume_at[v]])
        assert stage(d, PRESET.suite) == "finished"
    print(f"stopped in {stopped_s:.2f}s")


def test_ctrl_c_is_one_line_and_leaves_no_worker(tmp_path):
    proc = start(tmp_path, new_session=True)
    both_training(tmp_path, proc)
    workers = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    assert gone(workers, within=5.0), [p for p in workers if alive(p)]
    assert (tmp_path / LOCK).read_text() == ""
    for v in VARIANTS:
        assert json.loads((tmp_path / "runs" / f"{v}_s0" / RECORD).read_text())["state"] == "interrupted"


def test_sigkill_to_the_ladder_alone_takes_its_workers_with_it(tmp_path):
    proc = start(tmp_path)
    both_training(tmp_path, proc)
    workers = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert gone(workers, within=2.0), [p for p in workers if alive(p)]
    before = files(tmp_path)
    time.sleep(1.0)  # a surviving lane would write its next checkpoint (every 4 steps) within this
    assert files(tmp_path) == before


HOLD = ("import sys, time; from pathlib import Path; from looplab.ladder.lock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")


def test_a_run_held_by_a_live_process_is_refused_naming_it(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "baseline_s0"  # the smoke preset's first run
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        assert holder.stdout.readline().strip() == "held"
        try:
            with run_lock(run_dir):
                raise AssertionError("a held run directory was locked twice")
        except LooplabError as e:
            assert f"held by pid {holder.pid} " in str(e)
        assert main(["ladder", "--preset", "smoke", "--variants", "baseline", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"held by pid {holder.pid} " in err and str(run_dir) in err, err
        assert sorted(p.name for p in run_dir.iterdir()) == ["run.lock"]  # nothing trained, scored or reported
        assert not (tmp_path / "report").exists() and (tmp_path / LOCK).read_text() == ""
    finally:
        holder.kill()
        holder.wait()
    check_free([run_dir])  # the holder is gone: free again


def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """--launcher slurm through submitit (here its local executor): SLURM signals a job's timeout or
    preemption with USR2 (`--signal`); submitit requeues the job, which resumes the run."""
    pytest.importorskip("submitit")
    run_dir = tmp_path / "runs" / "baseline_s0"
    seen: dict[str, int] = {}

    def preempt() -> None:
        deadline = time.monotonic() + 120
        while not (run_dir / "last_model.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        task = [p for p in descendants(os.getpid())
                if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes()]
        seen["step"] = checkpoint_step(run_dir)
        os.kill(task[0], signal.SIGUSR2)

    signaller = threading.Thread(target=preempt)
    signaller.start()
    run_ladder(PRESET, variants=["baseline"], out=str(tmp_path), jobs=1, launcher="submitit_local",
               stream=io.StringIO())
    signaller.join()
    record = json.loads((run_dir / RECORD).read_text())
    assert record["state"] == "done" and stage(run_dir, PRESET.suite) == "finished"
    steps = [a["from_step"] for a in record["attempts"]]
    assert len(steps) == 2 and steps[0] == 0 and steps[1] >= seen["step"] > 0
