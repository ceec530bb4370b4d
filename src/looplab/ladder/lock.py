"""One ladder per directory: an advisory lock on `<out>/ladder.lock` held while a ladder runs.

The lock is `fcntl.flock` on the file, so the operating system releases it when the holder exits,
however it exits (a SIGKILL included): a killed ladder never blocks the next one. The file also
names its holder (pid, host, start time, command); a ladder that ends normally empties it, so a
name found in it by the next holder is a stale lock from a ladder that was killed, which is
reported and cleared. A second ladder on a directory whose lock is held exits with a one-line
error naming the holder.

Each run directory is fenced the same way: `run.lock` inside it is held by the process that trains
or scores that run (a lane worker, a cluster job, or the ladder itself with one lane) for as long as
it does, so a ladder never works on a run that a live process of an earlier ladder still holds; it
refuses with one line naming that process.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from looplab.errors import LooplabError

LOCK = "ladder.lock"
RUN_LOCK = "run.lock"


def holder_line() -> str:
    return (f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')} "
            f"({' '.join(sys.argv) or 'python'})")


@contextmanager
def ladder_lock(root: Path) -> Iterator[str]:
    """Hold the directory's lock for the block; yields the stale holder's line ('' when there was none)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        f = (root / LOCK).open("a+")
    except OSError as e:
        raise LooplabError(f"ladder directory {root} is not writable ({e.strerror})") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise LooplabError(f"ladder directory {root} is in use by {holder}; wait for it to finish or choose "
                               "another --out") from None
        f.seek(0)
        stale = f.read().strip()
        f.seek(0)
        f.truncate()
        f.write(holder_line() + "\n")
        f.flush()
        try:
            yield stale
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def held_message(run_dir: Path, holder: str) -> str:
    return (f"run directory {run_dir} is held by {holder or 'another process'}, a process of an earlier ladder that "
            "is still running; wait for it to exit or stop it, then rerun")


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block (created if need be); a live holder is a one-line error."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / RUN_LOCK).open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise LooplabError(held_message(run_dir, f.read().strip())) from None
        f.seek(0)
        f.truncate()
        f.write(holder_line() + "\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


def check_free(run_dirs: Iterable[Path]) -> None:
    """Refuse (one line naming the holder) when a live process holds one of these run directories."""
    for run_dir in run_dirs:
        try:
            f = (run_dir / RUN_LOCK).open("r")
        except FileNotFoundError:
            continue
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two checking ladders do not collide
            except BlockingIOError:
                raise LooplabError(held_message(run_dir, f.read().strip())) from None
            fcntl.flock(f, fcntl.LOCK_UN)
