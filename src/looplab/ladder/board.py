"""The ladder's console: one line per run with its state and wall time, and an overall bar with ETA.

On a terminal the whole board is redrawn in place; in a log (not a terminal) each state change is
one line and the bar follows every finished run. The ETA weighs each run by its estimated cost
(training FLOPs per token x tokens), so a slow variant still to come lengthens it; skipped runs
count for nothing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from looplab.train.progress import fmt_seconds

STATES = ("queued", "training", "evaluating", "done", "skipped", "failed")
FINAL = ("done", "skipped", "failed")


@dataclass
class Row:
    weight: float  # estimated cost, for the ETA
    state: str = "queued"
    start: float | None = None  # perf_counter when work began
    seconds: float = 0.0  # wall time, frozen once the run is final
    note: str = ""


class Board:
    def __init__(self, weights: dict[str, float], stream: TextIO | None = None) -> None:
        self.rows = {label: Row(weight=w) for label, w in weights.items()}
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.drawn = 0  # lines of the last in-place draw

    def add(self, label: str, weight: float) -> None:
        """A row for a run planned after the board was drawn (a sweep's extension)."""
        self.rows.setdefault(label, Row(weight=weight))

    def set(self, label: str, state: str, note: str = "") -> None:
        row, now = self.rows[label], time.perf_counter()
        if row.start is None and state in ("training", "evaluating"):
            row.start = now
        row.state, row.note = state, note
        if state in FINAL:
            row.seconds = now - row.start if row.start is not None else 0.0
        self.draw(label)

    def line(self, label: str) -> str:
        row = self.rows[label]
        seconds = row.seconds if row.state in FINAL or row.start is None else time.perf_counter() - row.start
        return f"  {label:<20} {row.state:<10} {fmt_seconds(seconds)}  {row.note}".rstrip()

    def bar(self) -> str:
        active = [r for r in self.rows.values() if r.state != "skipped"]
        total = sum(r.weight for r in active)
        done = sum(r.weight for r in active if r.state in FINAL)
        elapsed = time.perf_counter() - self.t0
        eta = fmt_seconds(elapsed * (total - done) / done) if done else "--:--"
        frac = done / total if total else 1.0
        finished = sum(r.state in FINAL for r in self.rows.values())
        return (f"ladder [{'#' * int(24 * frac):<24}] {100 * frac:5.1f}% {finished}/{len(self.rows)} runs "
                f"{fmt_seconds(elapsed)}<{eta}")

    def draw(self, changed: str) -> None:
        if self.tty:
            lines = [self.line(label) for label in self.rows] + [self.bar()]
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{text}\n" for text in lines))
            self.drawn = len(lines)
        else:
            self.stream.write(self.line(changed) + "\n")
            if self.rows[changed].state in FINAL:
                self.stream.write(self.bar() + "\n")
        self.stream.flush()
