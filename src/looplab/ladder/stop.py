"""Stopping a ladder, and lane workers that cannot outlive it.

SIGTERM and SIGHUP (`kill PID`, a scheduler's stop, a closed terminal) become `Stopped` in the
ladder's main thread, as Ctrl-C becomes KeyboardInterrupt: the ladder stops its lanes and exits with
one line (runner.py). A lane worker turns the same signals into `Stopped` while it brings a run
forward, so the run records that it was interrupted, and exits at once when it is idle.

`die_with` binds a worker to its ladder however the ladder ends, a SIGKILL included: on Linux the
kernel SIGKILLs the worker when the ladder exits (prctl PR_SET_PDEATHSIG), so no orphan goes on
writing a run directory; elsewhere a thread watches the parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from looplab.errors import Stopped

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_S = 0.2  # how often the fallback watcher looks for its parent


class Trap:
    armed = True  # raise Stopped (a run to record); when False, exit at once (an idle worker)
    fired = False  # one Stopped per process: a second signal while the first unwinds is ignored
    deferring = False  # inside `deferred`: note the signal, raise at the block's end
    pending = 0  # the signal noted while deferring


def on_signal(signum: int, frame: object) -> None:
    if not Trap.armed:
        os._exit(128 + signum)
    if Trap.fired or Trap.pending:
        return
    if Trap.deferring:
        Trap.pending = signum
        return
    Trap.fired = True
    raise Stopped(signum)


def trap_signals(*, armed: bool) -> dict[int, object]:
    """Turn SIGTERM and SIGHUP into Stopped (main thread only); returns the handlers they replace."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    Trap.armed, Trap.fired, Trap.deferring, Trap.pending = armed, False, False, 0
    return {s: signal.signal(s, on_signal) for s in SIGNALS}


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped inside the block; the previous handlers come back after it."""
    previous = trap_signals(armed=True)
    try:
        yield
    except Stopped as e:  # before any run was started (planning, taking the lock, starting the lanes)
        if e.message:
            raise
        raise Stopped(e.signum, f"{e}: no run was in flight; rerun the same command to resume") from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """A stop signal inside the block raises Stopped at its end: a child process being started when
    it arrives is not left half started (with a traceback on the ladder's stderr)."""
    outer = Trap.deferring
    Trap.deferring = True
    try:
        yield
    finally:
        Trap.deferring = outer
    if Trap.pending and not outer:
        signum, Trap.pending, Trap.fired = Trap.pending, 0, True
        raise Stopped(signum)


@contextmanager
def armed() -> Iterator[None]:
    """A worker's signals raise Stopped inside the block (it is bringing a run forward)."""
    Trap.armed = True
    try:
        yield
    finally:
        Trap.armed = False


def die_with(parent: int) -> None:
    """Have this process SIGKILLed as soon as `parent` (its parent, the ladder) exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        bound = libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
                           ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):  # not Linux
        bound = False
    if not bound:
        threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the ladder was gone before the binding took effect
        os.kill(os.getpid(), signal.SIGKILL)


def watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    os.kill(os.getpid(), signal.SIGKILL)
