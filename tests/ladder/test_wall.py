"""A ladder's wall time across invocations (ladder.wall): recorded as it runs, summed, recovered from logs."""

from __future__ import annotations

import json
import time

import pytest

from looplab.errors import LooplabError
from looplab.ladder import wall


def test_each_invocation_adds_an_entry_kept_current_while_it_runs(tmp_path):
    with wall.WallClock(tmp_path, every=0.02) as clock:
        time.sleep(0.15)
        beat = wall.read(tmp_path)[-1]["seconds"]  # written by the background thread, no run finished
        clock.tick(2)
    assert beat >= 0.05
    with wall.WallClock(tmp_path, every=10) as clock:
        clock.tick(1)
    entries = wall.read(tmp_path)
    assert [e["runs"] for e in entries] == [2, 1]
    assert entries[0]["seconds"] >= 0.15
    doc = json.loads((tmp_path / wall.WALL).read_text())
    assert doc["total_seconds"] == pytest.approx(sum(e["seconds"] for e in entries))
    assert wall.total_seconds(tmp_path) == pytest.approx(doc["total_seconds"])


def test_a_corrupt_file_is_a_one_line_error(tmp_path):
    (tmp_path / wall.WALL).write_text("{not json")
    with pytest.raises(LooplabError, match="corrupt"):
        wall.WallClock(tmp_path)


def test_console_logs_give_the_last_elapsed_time_of_each_invocation(tmp_path):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("ladder [##  ] 10.0% 3/9 runs 05:06<10:00\n  x done\nladder [### ] 20.0% 4/9 runs 55:06<1:25:59\n")
    second.write_text("ladder [#####] 90.0% 8/9 runs 1:02:03<05:00\n")
    assert [e["seconds"] for e in wall.from_console([first, second])] == [3306.0, 3723.0]
    wall.seed_from_console(tmp_path, [first, second])
    assert wall.total_seconds(tmp_path) == 7029.0
    with pytest.raises(LooplabError, match="already counts"):
        wall.seed_from_console(tmp_path, [first])
    (tmp_path / "c.log").write_text("no bar here\n")
    with pytest.raises(LooplabError, match="no ladder progress bar"):
        wall.from_console([tmp_path / "c.log"])
