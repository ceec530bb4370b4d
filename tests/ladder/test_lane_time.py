"""scripts/lane_time.py: each ladder's wall time and lane-minutes by phase, read from its records; a
directory without them is a one-line error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lane_time.py"
spec = importlib.util.spec_from_file_location("lane_time", SCRIPT)
lane_time = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lane_time)


def test_prints_wall_and_lane_minutes_per_ladder(tmp_path, capsys):
    (tmp_path / "ladder.json").write_text(json.dumps(
        {"sweep_runs": {}, "runs": {"a_s0": {"arm": "a", "train_seconds": 1200.0, "eval_seconds": 300.0},
                                    "b_s0": {"arm": "b", "train_seconds": 600.0, "eval_seconds": 1800.0}}}))
    (tmp_path / "wall.json").write_text(json.dumps({"invocations": [{"seconds": 1500.0}, {"seconds": 900.0}]}))
    assert lane_time.main([str(tmp_path / "ladder.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path}: wall 40 min. Lane time: sweep 0, training 30 and evaluation 35 lane-minutes")
    assert "`b` 30, `a` 5" in out


def test_a_directory_without_records_is_a_one_line_error(tmp_path, capsys):
    assert lane_time.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ladder.json" in err and len(err.strip().splitlines()) == 1
