"""The /proc reading the soak and the signal tests rely on: a child is a live descendant until it exits."""

from __future__ import annotations

import os
import subprocess
import sys

from looplab.ladder.procs import alive, descendants


def test_a_child_is_a_live_descendant_until_it_exits():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid()) and alive(child.pid)
    finally:
        child.kill()
    child.wait()
    assert child.pid not in descendants(os.getpid()) and not alive(child.pid)
    assert not alive(2**22 + 1)  # no such pid
