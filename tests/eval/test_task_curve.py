"""scripts/task_curve.py: a task's periodic IID accuracy per run, read from metrics.json; runs without it
are named and skipped, and none at all is a one-line error."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "task_curve.py"
spec = importlib.util.spec_from_file_location("task_curve", SCRIPT)
task_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(task_curve)


def _run(root: Path, name: str, rows: list[dict]) -> Path:
    d = root / "runs" / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(rows))
    return d


def test_prints_each_evaluation_and_skips_runs_without_the_task(tmp_path, capsys):
    good = _run(tmp_path, "baseline_s0", [{"step": 1, "tokens": 3840, "loss": 5.0},
                                         {"step": 650, "tokens": 249_600, "eval_acc/addition_rev": 0.012},
                                         {"step": 1300, "tokens": 499_200, "eval_acc/addition_rev": 0.875}])
    other = _run(tmp_path, "ssm_s0", [{"step": 650, "tokens": 249_600, "eval_acc/parity": 1.0}])
    assert task_curve.main(["addition_rev", str(good), str(other), str(tmp_path / "missing")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{tmp_path.name}/baseline_s0 249k:1% 499k:88%"
    assert "skipped" in err and "ssm_s0" in err and "missing" in err


def test_no_run_with_the_task_is_an_error(tmp_path, capsys):
    run = _run(tmp_path, "baseline_s0", [{"step": 650, "tokens": 249_600, "eval_acc/parity": 1.0}])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    assert task_curve.main(["copy", str(run), str(tmp_path / "broken")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: no run among 2")
