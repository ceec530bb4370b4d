"""A ladder's wall time across the invocations that ran it: `<out>/wall.json`.

A ladder resumes across sessions, so the time it took is the sum of its invocations' wall times.
Each invocation appends one entry (its start, its seconds so far, the runs it finished) and rewrites
it as it goes (after every finished run, and every `every` seconds from a background thread while
runs are in flight), so an invocation killed at the end of a session keeps the time it had spent up
to its last write. The report states the total (ladder.summary).

`from_console` recovers the same figure from the console logs of a ladder that ran before this file
existed: the last elapsed time each log's overall bar printed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.io import write_json

WALL = "wall.json"
BAR = re.compile(r"runs (?:(\d+):)?(\d+):(\d+)<")  # the bar's "<runs> runs [h:]mm:ss<eta"


def read(root: Path) -> list[dict[str, Any]]:
    """The invocations recorded so far ([] when none)."""
    path = root / WALL
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["invocations"])
    except (ValueError, KeyError, TypeError) as e:
        raise LooplabError(f"{path} is corrupt ({e}); delete it to restart the wall-time count") from None


def total_seconds(root: Path) -> float:
    return float(sum(i["seconds"] for i in read(root)))


class WallClock:
    """This invocation's entry in wall.json, kept current while the `with` block runs."""

    def __init__(self, root: Path, *, every: float = 30.0, source: str = "ladder") -> None:
        self.root, self.every = root, every
        self.prior = read(root)
        self.t0 = time.perf_counter()
        self.entry: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": 0.0, "runs": 0,
                                      "source": source}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> WallClock:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()
        self.write()

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            self.write()

    def tick(self, finished: int) -> None:
        """Count `finished` more runs and record the time so far."""
        with self.lock:
            self.entry["runs"] += finished
        self.write()

    def write(self) -> None:
        with self.lock:
            self.entry["seconds"] = round(time.perf_counter() - self.t0, 1)
            entries = [*self.prior, self.entry]
            write_json(self.root / WALL, {"invocations": entries, "total_seconds": sum(i["seconds"] for i in entries)})


def from_console(logs: Sequence[Path]) -> list[dict[str, Any]]:
    """One invocation per console log: the last elapsed time its overall bar printed."""
    out = []
    for log in logs:
        found = BAR.findall(Path(log).read_text(errors="replace"))
        if not found:
            raise LooplabError(f"{log}: no ladder progress bar in it (expected '... runs mm:ss<eta')")
        h, m, s = found[-1]
        out.append({"started": "", "seconds": float(int(h or 0) * 3600 + int(m) * 60 + int(s)), "runs": 0,
                    "source": f"console log {Path(log).name}"})
    return out


def seed_from_console(root: Path, logs: Sequence[Path]) -> None:
    """Write wall.json for a ladder that ran without one, from its console logs (refused if one exists)."""
    if (root / WALL).exists():
        raise LooplabError(f"{root / WALL} exists; it already counts this ladder's time")
    entries = from_console(logs)
    write_json(root / WALL, {"invocations": entries, "total_seconds": sum(e["seconds"] for e in entries)})
