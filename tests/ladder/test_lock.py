"""One ladder per directory: a second invocation is refused naming the holder; a killed holder's
lock is detected as stale and cleared."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from looplab.cli import main
from looplab.errors import LooplabError
from looplab.ladder.lock import LOCK, ladder_lock

HOLD = ("import sys, time; from pathlib import Path; from looplab.ladder.lock import ladder_lock\n"
        "with ladder_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")


def holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_ladder_is_refused_naming_the_holder(tmp_path, capsys):
    proc = holder(tmp_path)
    try:
        with pytest.raises(LooplabError, match=f"in use by pid {proc.pid} on "):
            with ladder_lock(tmp_path):
                pass
        assert main(["ladder", "--preset", "smoke", "--variants", "baseline", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pid {proc.pid}" in err and "choose another --out" in err
    finally:
        proc.kill()
        proc.wait()


def test_killed_holder_leaves_a_stale_lock_that_is_cleared(tmp_path):
    proc = holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert f"pid {proc.pid}" in (tmp_path / LOCK).read_text()
    with ladder_lock(tmp_path) as stale:
        assert f"pid {proc.pid}" in stale
    with ladder_lock(tmp_path) as stale:  # a ladder that finished leaves nothing behind
        assert stale == ""
    assert (tmp_path / LOCK).read_text() == ""
