"""`looplab report` on fake run directories: table, verdicts, hypothesis table, plots, bad input."""

from __future__ import annotations

import json

import pytest

from looplab.cli import main
from looplab.errors import LooplabError
from looplab.eval.report import Stat, criteria, verdict, write_report


def _grid(acc: float, ood: float) -> dict:
    tasks = {"parity": {"lengths": {"8": {"acc": acc, "n": 10, "split": "iid"},
                                    "32": {"acc": ood, "n": 10, "split": "ood"}}, "iid_acc": acc, "ood_acc": ood},
             "copy": {"lengths": {"4": {"acc": acc, "n": 10, "split": "iid"},
                                  "16": {"acc": ood, "n": 10, "split": "ood"}}, "iid_acc": acc, "ood_acc": ood}}
    return {"tasks": tasks, "iid_acc": acc, "ood_acc": ood}


def fake_run(root, variant: str, seed: int, acc: float, ood: float, seconds: float, ppl: float | None = 20.0,
             loops: bool = False, eval_results: bool = True):
    d = root / f"{variant}_s{seed}"
    (d / "eval_results").mkdir(parents=True)
    options = {"n_loops": 2} if variant == "shared_loop" else {}
    (d / "config.json").write_text(json.dumps({"model": {"variant": variant, "options": options},
                                               "train": {"seed": seed}}))
    (d / "summary.json").write_text(json.dumps({
        "variant": variant, "tokens": 100_000, "train_seconds": seconds, "final_eval": _grid(acc, ood),
        "cost": {"params": 500_000, "flops_per_token": 3_000_000}}))
    (d / "metrics.json").write_text(json.dumps([{"step": s, "tokens": 1000 * s, "phase": "algorithmic",
                                                 "loss": 3.0 / s + seed * 0.01} for s in range(1, 20)]))
    if eval_results:
        res = {"algorithmic": _grid(acc, ood), "longctx": {"cells": {
            "1024": {"0": {"acc": 0.5, "n": 20, "prompt_tokens": 1020}, "1": {"acc": 0.7, "n": 20, "prompt_tokens": 1020}},
            "2048": {"0": {"acc": 0.25, "n": 20, "prompt_tokens": 2040}, "1": {"acc": 0.5, "n": 20, "prompt_tokens": 2040}}},
            "by_length": {"1024": 0.6, "2048": 0.375}}, "skipped": {}, "suite_seconds": {}}
        if ppl is not None:
            res["ppl"] = {"ppl": ppl}
        if loops:
            res["algorithmic"]["loops"] = {str(n): _grid(min(1.0, acc * n / 2), ood) for n in (1, 2, 4)}
        (d / "eval_results" / "results_all.json").write_text(json.dumps({"suite": "all", "results": res}))
    return d


@pytest.fixture
def runs(tmp_path):
    return [fake_run(tmp_path, "baseline", 0, 0.50, 0.10, 60.0), fake_run(tmp_path, "baseline", 1, 0.52, 0.12, 62.0),
            fake_run(tmp_path, "shared_loop", 0, 0.70, 0.30, 110.0, loops=True),
            fake_run(tmp_path, "shared_loop", 1, 0.72, 0.32, 112.0, loops=True)]


def test_report_writes_table_verdicts_and_plots(runs, tmp_path):
    out = tmp_path / "report"
    md = write_report([str(r) for r in runs], str(out)).read_text()
    assert "| `baseline` | 2 (0,1) |" in md and "| `shared_loop(n_loops=2)` | 2 (0,1) |" in md
    assert "51.0 ± 1.4%" in md and "71.0 ± 1.4%" in md  # mean ± sample std of the algorithmic accuracy
    assert "37.5 ± 0.0%" in md  # needle at 2k
    assert "1.82 ± 0.02×" in md  # train time per token relative to the baseline: 111 / 61
    assert "`shared_loop(n_loops=2)`: **wins on every criterion measured**" in md
    assert "| Algorithmic acc | 70% / 51.0 ± 1.4% | 75% / 71.0 ± 1.4% | 80% / n/a | 82% / n/a |" in md
    for name in ("heatmap_baseline.png", "heatmap_shared_loop_n_loops_2_.png", "loops.png", "loss.png"):
        assert (out / name).stat().st_size > 1000, name
        assert f"({name})" in md


def test_missing_suites_show_na_and_one_seed_is_not_enough(tmp_path):
    runs = [fake_run(tmp_path, "baseline", 0, 0.5, 0.1, 60.0, eval_results=False),
            fake_run(tmp_path, "act", 0, 0.9, 0.5, 70.0, eval_results=False)]
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "n/a" in md and "not enough seeds (n=1" in md
    assert "no loop-count plot" in md and (tmp_path / "r" / "loss.png").exists()


def test_spread_larger_than_margin():
    v = {"alg_acc": Stat(0.60, 0.10, 3), "ood_acc": Stat(0.3, 0.01, 3), "time_ratio": Stat(1.0, None, 3),
         "ppl": Stat(None, None, 0)}
    b = {"alg_acc": Stat(0.50, 0.10, 3), "ood_acc": Stat(0.1, 0.01, 3), "time_ratio": Stat(1.0, None, 3),
         "ppl": Stat(None, None, 0)}
    marks = criteria(v, b)
    assert marks[">= +5 pts algorithmic"] == "within spread" and marks["better OOD"] == "pass"
    assert marks["no PPL collapse"] == "n/a"
    text, _ = verdict("x", {"baseline": b, "x": v})
    assert text.startswith("not enough seeds: the seed spread")


def test_ppl_collapse_and_slow_training_fail():
    b = {"alg_acc": Stat(0.5, 0.0, 2), "ood_acc": Stat(0.1, 0.0, 2), "time_ratio": Stat(1.0, 0.0, 2),
         "ppl": Stat(20.0, 0.0, 2)}
    v = {"alg_acc": Stat(0.9, 0.0, 2), "ood_acc": Stat(0.5, 0.0, 2), "time_ratio": Stat(2.5, 0.0, 2),
         "ppl": Stat(40.0, 0.0, 2)}
    text, marks = verdict("v", {"baseline": b, "v": v})
    assert marks["<= 2x train time"] == "fail" and marks["no PPL collapse"] == "fail"
    assert text.startswith("does not win")


def test_bad_input_is_one_line_error(tmp_path, capsys):
    with pytest.raises(LooplabError, match="no run directories"):
        write_report([], str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LooplabError, match="has no summary.json"):
        write_report([str(tmp_path / "empty")], str(tmp_path / "out"))
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
