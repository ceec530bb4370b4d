"""A dependency-free progress bar: one redrawn line on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time


def fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, total: int, desc: str = "", enabled: bool = True, stream=None) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.last_print = 0.0

    def update(self, done: int, **fields: object) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        final = done >= self.total
        if not final and now - self.last_print < (0.2 if self.tty else 10.0):
            return
        self.last_print = now
        elapsed = now - self.start
        frac = done / max(1, self.total)
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(24 * frac)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = (f"{self.desc} [{bar:<24}] {100 * frac:5.1f}% {done}/{self.total} "
                f"{fmt_seconds(elapsed)}<{fmt_seconds(eta)} {extra}")
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.stream.flush()
