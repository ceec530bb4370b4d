"""Where the ladder's runs execute: one after another in this process, or N at once in workers.

`Lanes(jobs=1)` calls the work function in this process (what a test can interrupt and inspect).
`Lanes(jobs=N)` hands each run to a pool of N spawned worker processes (concurrent.futures), each
training with its own threads; the workers report state changes (training, evaluating, ...)
through a queue, and the board draws them as they come. A run's result does not depend on its
lane: the same flags, seeds and thread count give the same weights in either mode.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from looplab.ladder.board import Board

POLL_S = 0.5  # how often the board is redrawn from worker events while runs are in flight


class QueueBoard:
    """A worker's stand-in for the board: state changes go to the ladder process through a queue."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def set(self, label: str, state: str, note: str = "") -> None:
        self.events.put((label, state, note))


class Lanes:
    def __init__(self, jobs: int, board: Board) -> None:
        self.jobs, self.board = jobs, board
        self.pool: ProcessPoolExecutor | None = None
        self.running: dict[Future, Any] = {}
        self.done: list[tuple[Any, dict[str, Any]]] = []
        if jobs > 1:
            ctx = mp.get_context("spawn")  # no fork of a process that holds torch threads
            self.manager = ctx.Manager()
            self.events = self.manager.Queue()
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)

    @property
    def free(self) -> bool:
        return len(self.running) < self.jobs

    def submit(self, key: Any, work: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Start `work(*args, board)`; its record comes back from `collect` with `key`."""
        if self.pool is None:
            self.done.append((key, work(*args, self.board)))
            return
        self.running[self.pool.submit(work, *args, QueueBoard(self.events))] = key

    def collect(self) -> list[tuple[Any, dict[str, Any]]]:
        """The runs finished since the last call; waits for at least one when none has finished."""
        while not self.done and self.running:
            finished, _ = wait(self.running, timeout=POLL_S, return_when=FIRST_COMPLETED)
            self.drain()
            for future in finished:
                self.done.append((self.running.pop(future), future.result()))
        out, self.done = self.done, []
        return out

    def drain(self) -> None:
        while True:
            try:
                label, state, note = self.events.get_nowait()
            except queue.Empty:
                return
            self.board.set(label, state, note)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.drain()
            self.manager.shutdown()
