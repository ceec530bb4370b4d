"""Where the ladder's runs execute: in this process, in N local workers, or as cluster jobs.

`Lanes(jobs=1)` calls the work function in this process (what a test can interrupt and inspect).
`Lanes(jobs=N)` hands each run to a pool of N spawned worker processes (concurrent.futures), each
training with its own threads; the workers report state changes (training, evaluating, ...)
through a queue, and the board draws them as they come. `JobLanes` submits each run as a job
through submitit (SLURM, or submitit's local executor), up to N in flight; the board shows a job's
submission and its end. A run's result does not depend on its lane: the same flags, seeds and
thread count give the same weights in every mode. On a machine with GPUs, each local worker sees
one of them (`CUDA_VISIBLE_DEVICES`, round robin when there are more lanes than GPUs).

A local worker dies with its ladder, however the ladder ends (`stop.die_with`), and `stop` ends the
runs in flight: SIGTERM to each worker (its run records that it was interrupted), `GRACE_S` to exit,
then SIGKILL. A job's callable asks submitit to requeue it when SLURM signals a timeout or a
preemption (`Requeued`); the requeued job resumes the run from its last checkpoint.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.flags import setting
from looplab.ladder.board import Board
from looplab.ladder.stop import armed, deferred, die_with, trap_signals

POLL_S = 0.5  # how often the board is redrawn from worker events while runs are in flight
GRACE_S = 10.0  # how long a stopped worker has to record its run and exit before it is SIGKILLed


class QueueBoard:
    """A worker's stand-in for the board: state changes go to the ladder process through a queue."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def set(self, label: str, state: str, note: str = "") -> None:
        self.events.put((label, state, note))


def gpu_assignment(visible: list[str], jobs: int) -> list[str]:
    """The GPU each of `jobs` workers sees: the visible ones in turn (none without GPUs)."""
    return [visible[i % len(visible)] for i in range(jobs)] if visible else []


def visible_gpus() -> list[str]:
    """This process's GPUs, as CUDA_VISIBLE_DEVICES names them (ordinals when it is unset)."""
    names = os.environ.get("CUDA_VISIBLE_DEVICES")
    if names is not None:
        return [n.strip() for n in names.split(",") if n.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]  # NVML: no CUDA context in this process


def claim_gpu(ids: Any) -> None:
    """Pool initializer: this worker sees the next GPU of the queue (nothing when it is empty)."""
    try:
        os.environ["CUDA_VISIBLE_DEVICES"] = ids.get_nowait()
    except queue.Empty:
        pass


def start_worker(ids: Any, ladder: int) -> None:
    """Pool initializer: die with the ladder, turn stop signals into Stopped, claim a GPU."""
    die_with(ladder)
    trap_signals(armed=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the ladder stops its lanes
    claim_gpu(ids)


def in_lane(work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A worker's call of `work`: a stop signal during it raises Stopped, which the run records."""
    with armed():
        return work(*args)


class Lanes:
    def __init__(self, jobs: int, board: Board) -> None:
        self.jobs, self.board = jobs, board
        self.pool: ProcessPoolExecutor | None = None
        self.running: dict[Future, Any] = {}
        self.done: list[tuple[Any, dict[str, Any]]] = []
        self.current: Any = None  # the run this process is bringing forward (one lane)
        if jobs > 1:
            with deferred():
                self.start_pool(jobs)

    def start_pool(self, jobs: int) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process that holds torch threads
        self.manager = SyncManager(ctx=ctx)
        self.manager.start(die_with, (os.getpid(),))
        self.events = self.manager.Queue()
        gpus = self.manager.Queue()
        for gpu in gpu_assignment(visible_gpus(), jobs):
            gpus.put(gpu)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=start_worker,
                                        initargs=(gpus, os.getpid()))

    @property
    def free(self) -> bool:
        """A lane is free (in this process: once the last run's record has been collected)."""
        return len(self.running) + len(self.done) < self.jobs

    def submit(self, key: Any, work: Callable[..., dict[str, Any]], *args: Any) -> None:
        """Start `work(*args, board)`; its record comes back from `collect` with `key`."""
        if self.pool is None:
            self.current = key
            self.done.append((key, work(*args, self.board)))
            self.current = None
            return
        with deferred():  # the pool may start a worker
            self.running[self.pool.submit(in_lane, work, *args, QueueBoard(self.events))] = key

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

    def stop(self) -> list[Any]:
        """End the runs in flight (SIGTERM, GRACE_S, then SIGKILL to each worker); returns their keys."""
        keys = [*self.running.values(), *([self.current] if self.current is not None else [])]
        if self.pool is not None:
            workers = list((self.pool._processes or {}).values())  # the pool's own record of its processes
            self.pool.shutdown(wait=False, cancel_futures=True)
            for w in workers:  # terminate and kill pass over a worker the pool has already reaped
                w.terminate()
            deadline = time.monotonic() + GRACE_S
            for w in workers:
                w.join(max(0.0, deadline - time.monotonic()))
            for w in workers:
                if w.exitcode is None:
                    w.kill()
                    w.join()
            self.running.clear()
        return keys

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.drain()
            self.manager.shutdown()


LAUNCHERS = ("local", "slurm", "submitit_local")  # submitit_local: submitit's local executor (tests, debugging)


@dataclass(frozen=True, kw_only=True)
class SlurmOptions:
    """What each run's job asks the cluster for (`looplab ladder --launcher slurm --slurm_*`)."""

    partition: str = setting("", "SLURM partition (default: the cluster's)", flag="slurm_partition")
    account: str = setting("", "SLURM account to charge (default: the user's)", flag="slurm_account")
    time_min: int = setting(60, "wall-time limit of one run's job, minutes", flag="slurm_time")
    gpus_per_run: int = setting(0, "GPUs per run's job", flag="slurm_gpus")
    cpus_per_run: int = setting(1, "CPU cores per run's job", flag="slurm_cpus")
    mem_gb: int = setting(0, "memory per run's job in GB (0: the partition's default)", flag="slurm_mem_gb")

    def parameters(self, cluster: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": "looplab-ladder", "timeout_min": self.time_min,
                               "cpus_per_task": self.cpus_per_run, "gpus_per_node": self.gpus_per_run}
        if self.mem_gb:
            out["mem_gb"] = self.mem_gb
        if cluster == "slurm":
            out.update({f"slurm_{k}": v for k, v in (("partition", self.partition), ("account", self.account)) if v})
        return out


class NullBoard:
    """A job's stand-in for the board: its progress is read from the job's end, not streamed."""

    def set(self, label: str, state: str, note: str = "") -> None:
        pass


class Requeued:
    """A run's job. submitit requeues a job whose callable has `checkpoint` when SLURM signals its
    timeout or preemption; the run resumes from its last checkpoint, so the same call is all it needs."""

    def __init__(self, work: Callable[..., dict[str, Any]]) -> None:
        self.work = work

    def __call__(self, *args: Any) -> dict[str, Any]:
        return self.work(*args)

    def checkpoint(self, *args: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args)


class JobLanes:
    """Each run a submitit job, at most `jobs` in flight; the ladder process waits for them."""

    def __init__(self, cluster: str, folder: Path, jobs: int, board: Board, slurm: SlurmOptions) -> None:
        try:
            import submitit
        except ImportError:
            raise LooplabError(f"--launcher {cluster} needs submitit: pip install 'looplab[slurm]'") from None
        self.jobs, self.board = jobs, board
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster="local" if cluster != "slurm" else "slurm")
        self.executor.update_parameters(**slurm.parameters(cluster))
        self.running: dict[Any, Any] = {}  # job -> key

    @property
    def free(self) -> bool:
        return len(self.running) < self.jobs

    def submit(self, key: Any, work: Callable[..., dict[str, Any]], *args: Any) -> None:
        with deferred():
            job = self.executor.submit(Requeued(work), *args, NullBoard())
            self.running[job] = key
        self.board.set(key.label, "training", f"job {job.job_id}")

    def collect(self) -> list[tuple[Any, dict[str, Any]]]:
        while True:
            finished = [job for job in self.running if job.done()]
            if finished or not self.running:
                break
            time.sleep(POLL_S)
        out = []
        for job in finished:
            key = self.running.pop(job)
            try:
                record = job.result()
            except Exception as e:  # the job itself failed (killed, out of time): the run is failed
                text = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                record = {"state": "failed", "error": f"job {job.job_id}: {text}"}
            self.board.set(key.label, record.get("state", "failed"), record.get("error", ""))
            out.append((key, record))
        return out

    def stop(self) -> list[Any]:
        """Cancel the jobs in flight (SLURM: SIGTERM, then SIGKILL after its grace); returns their keys."""
        keys = list(self.running.values())
        self.close()
        self.running.clear()
        return keys

    def close(self) -> None:
        for job in self.running:
            job.cancel(check=False)
