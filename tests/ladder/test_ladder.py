"""The ladder end to end on a micro preset: report rows, skipping, failures, restarts, bad input. The
runs are evaluated on the algorithmic suite, except the end-to-end ladder's (FULL: every suite)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from looplab.errors import LooplabError
from looplab.ladder import LadderPreset, run_ladder, summary
from looplab.ladder import runner as ladder_runner
from looplab.ladder.match import TOLERANCES, match_shape
from tests.helpers import GENERIC
from tests.test_cli import call

REPO = Path(__file__).resolve().parents[2]
MICRO = LadderPreset(
    name="micro", note="test preset", size="tiny",
    train=dict(alg_tasks=("copy", "successor"), alg_tokens=4096, total_tokens=4096, seq_len=32, batch_size=8,
               warmup_tokens=512, eval_every_tokens=2048, eval_samples=4),
    evaluation=dict(suite="algorithmic", samples=4), n_loops=(1, 2), threads=1,
)
FULL = dataclasses.replace(MICRO, evaluation=dict(suite="all", samples=4, needle_lengths=(64,), needle_depths=(0.5,),
                                                  needle_trials=1, ppl_tokens=256))
VARIANTS = ["baseline", "shared_loop"]


def ladder(out: Path, stream: io.StringIO | None = None, preset: LadderPreset = MICRO, **kw) -> Path:
    return run_ladder(preset, variants=kw.pop("variants", VARIANTS), out=str(out), stream=stream or io.StringIO(), **kw)


def table_rows(report: Path) -> dict[str, str]:
    """variant -> its row of the report's ladder table."""
    return {line.split("|")[1].strip(" `"): line for line in report.read_text().splitlines()
            if line.startswith("| `")}


def mtimes(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ladder")
    ladder(out, preset=FULL)
    return out


def test_end_to_end_writes_report_with_a_row_per_variant(finished):
    report = finished / "report" / "REPORT.md"
    assert report.exists()
    rows = table_rows(report)
    assert set(VARIANTS) <= set(rows)
    assert "Matching: `flops`" in report.read_text()
    loop = json.loads((finished / "runs/shared_loop_s0/eval_results/results_all.json").read_text())
    assert set(loop["results"]["algorithmic"]["loops"]) == {"1", "2"}  # the sweep ran for the looped variant
    base = json.loads((finished / "runs/baseline_s0/eval_results/results_all.json").read_text())
    assert base["metadata"]["decoding"]["n_loops"] == []
    doc = json.loads((finished / "ladder.json").read_text())
    assert {r["state"] for r in doc["runs"].values()} == {"done"}


def test_second_invocation_skips_finished_runs(finished):
    before = mtimes(finished)
    ladder(finished, preset=FULL)
    assert mtimes(finished) == before
    doc = json.loads((finished / "ladder.json").read_text())
    assert {r["state"] for r in doc["runs"].values()} == {"done"}  # what the first invocation recorded
    assert set(VARIANTS) <= set(table_rows(finished / "report" / "REPORT.md"))
    entries = json.loads((finished / "wall.json").read_text())["invocations"]
    assert len(entries) == 2 and entries[0]["runs"] == len(VARIANTS) and entries[1]["runs"] == len(VARIANTS)
    text = (finished / "report" / "REPORT.md").read_text()  # written just before the last update of wall.json
    stated = re.search(r"Wall time: (\d+) minutes, .* over 2 invocations", text)
    assert stated and abs(int(stated[1]) - sum(e["seconds"] for e in entries) / 60) <= 1
    lanes = re.search(r"Lane time: sweep (\d+), training (\d+) and evaluation (\d+) lane-minutes", text)
    assert lanes and int(lanes[2]) == round(sum(r["train_seconds"] for r in doc["runs"].values()) / 60)


def test_lane_time_sums_each_phase_and_names_the_costliest_evaluations():
    doc = {"sweep_runs": {"a lr1": {"train_seconds": 600.0}, "a lr2": {"train_seconds": 300.0, "eval_seconds": 60.0}},
           "runs": {"a_s0": {"arm": "a", "train_seconds": 120.0, "eval_seconds": 60.0},
                    "a_s1": {"arm": "a", "train_seconds": 120.0, "eval_seconds": 60.0},
                    "b_s0": {"arm": "b", "train_seconds": 240.0, "eval_seconds": 600.0},
                    "c_s0": {"arm": "c", "train_seconds": 60.0, "eval_seconds": 6.0}}}
    line = summary.lane_line(doc, top=2)
    assert line.startswith("Lane time: sweep 16, training 9 and evaluation 12 lane-minutes")
    assert "costliest evaluations: `b` 10, `a` 2 " in line and "`c`" not in line
    assert summary.lane_line({"runs": {}}).startswith("Lane time: sweep 0, training 0 and evaluation 0")


def test_changed_settings_are_refused(finished):
    with pytest.raises(LooplabError, match="other settings"):
        run_ladder(dataclasses.replace(FULL, train={**FULL.train, "lr": 2e-3}), variants=VARIANTS, out=str(finished), stream=io.StringIO())


def test_failed_variant_is_reported_and_the_other_finishes(tmp_path, monkeypatch):
    real = ladder_runner.train_run

    def flaky(run, at, log):
        if run.launch.variant == "shared_loop":
            raise RuntimeError("boom\nsecond line")
        real(run, at, log)

    monkeypatch.setattr(ladder_runner, "train_run", flaky)
    report = ladder(tmp_path)
    rows = table_rows(report)
    assert "failed" in rows["shared_loop"] and "failed" not in rows["baseline"]
    assert "RuntimeError: boom" in report.read_text() and "second line" not in report.read_text()
    assert (tmp_path / "runs/baseline_s0/summary.json").exists()


def test_interrupted_ladder_resumes_without_retraining(tmp_path):
    def stop_after_first(run, record):
        if run.variant == "baseline":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ladder(tmp_path, after_run=stop_after_first)
    assert not (tmp_path / "runs/shared_loop_s0").exists()
    before = mtimes(tmp_path)
    report = ladder(tmp_path)
    assert mtimes(tmp_path)["baseline_s0"] == before["baseline_s0"]
    assert set(VARIANTS) <= set(table_rows(report))


def test_sigkilled_ladder_reruns_without_retraining(tmp_path):
    """A ladder process killed with SIGKILL once the first run's summary.json appears, then rerun."""
    script = ("import sys; sys.path.insert(0, sys.argv[2]); from tests.ladder.test_ladder import ladder; "
              "from pathlib import Path; ladder(Path(sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(REPO)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "runs/baseline_s0/summary.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists()
    before = first.stat().st_mtime_ns
    report = ladder(tmp_path)
    assert first.stat().st_mtime_ns == before
    assert set(VARIANTS) <= set(table_rows(report))


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    """A run killed after its first checkpoint (no summary.json) continues with --resume."""
    first = ladder_runner.plan(MICRO, ["baseline"], 1, "config", tmp_path)[0]
    ladder_runner.train_run(first, "new", io.StringIO())
    (first.dir / "summary.json").unlink()  # as if killed after the last checkpoint
    assert ladder_runner.stage(first.dir) == "partial"
    board = io.StringIO()
    ladder(tmp_path, board, variants=["baseline"])
    assert "resuming" in board.getvalue()
    assert ladder_runner.stage(first.dir, MICRO.suite) == "finished"


@pytest.mark.parametrize(("kw", "needle"), [
    ({"preset": "huge"}, "allowed: smoke, cpu, axes, halting, parity_ssm, repro_grazzi, repro_fan, repro_coupling, nano, axes_succ, repro_grazzi_gpu, repro_fan_gpu, repro_coupling_gpu"),
    ({"jobs": 0}, "--jobs"),
    ({"variants": ["nope"]}, "allowed: baseline"),
    ({"match": "area"}, "allowed: config, params, flops"),
    ({"seeds": 0}, "--seeds"),
])
def test_bad_input_is_one_line_error(tmp_path, kw, needle):
    preset = kw.pop("preset", MICRO)
    with pytest.raises(LooplabError) as err:
        run_ladder(preset, variants=kw.pop("variants", VARIANTS), out=str(tmp_path), stream=io.StringIO(), **kw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_cli_bad_preset_is_one_line(tmp_path, capsys):
    proc = call(capsys, "looplab", "ladder", "--preset", "huge", "--out", str(tmp_path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "allowed: smoke, cpu, axes, halting, parity_ssm, repro_grazzi, repro_fan, repro_coupling, nano, axes_succ, repro_grazzi_gpu, repro_fan_gpu, repro_coupling_gpu" in proc.stderr


@pytest.mark.parametrize("mode", ["params", "flops"])
def test_matching_brings_every_variant_within_tolerance(mode):
    for variant in GENERIC:
        shape = match_shape(variant, mode, size="tiny", vocab_size=260, seq_len=64)
        if shape.ratio is not None:
            assert abs(shape.ratio - 1) <= TOLERANCES[mode], (variant, shape)


def test_matching_an_arm_whose_options_set_a_width():
    """axes_succ's loop_len_rope carries the axes preset's d_model among its options; successor in the mix
    changes its realised loops, so matching walks the width and refines d_ff, which once raised TypeError
    (d_model given twice) instead of matching."""
    from looplab.ladder import PRESETS
    from looplab.ladder.runner import make_plan

    assert "d_model" in PRESETS["axes_succ"].options_of("loop_len_rope")
    plan, names = make_plan(PRESETS["axes_succ"], ["loop_len_rope"], 1, "flops", Path("unused"))
    shape = plan.shapes["loop_len_rope"]
    assert names == ["loop_len_rope"] and abs(shape.value / shape.target - 1) <= TOLERANCES["flops"]


# two rates, two seeds each, one extension: a winner at either edge of a two-value grid adds one rate
SWEEP = dataclasses.replace(MICRO, lr_grid=(3e-4, 3e-3), sweep_tokens=1024, sweep_steps=1,
                            evaluation={**MICRO.evaluation, "suite": "algorithmic"})
SWEPT = ["baseline"]


def weights(out: Path) -> dict[str, str]:
    from looplab.checkpoint import load_checkpoint

    return {p.parent.name: load_checkpoint(p).digest for p in sorted((out / "runs").glob("*/best_model.pt"))}


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("swept")
    run_ladder(SWEEP, variants=SWEPT, out=str(out), stream=io.StringIO())
    return out


def test_sweep_extends_past_the_winning_edge_and_is_reported(swept):
    """Both seeds at both rates, then one rate a factor 2 past the winning edge; every seed trains at the
    rate the rule picks from the sweep runs' summaries; the report holds the table and the plot."""
    from looplab.ladder.sweep import choose, score

    doc = json.loads((swept / "ladder.json").read_text())
    entry = doc["lr_sweep"]["baseline"]
    assert len(entry["extended"]) == 1
    added = entry["extended"][0]
    assert added in (3e-4 / 2, 3e-3 * 2)
    points = {lr: [score(swept / "sweep" / f"baseline_lr{lr:g}_s{seed}") for seed in (0, 1)]
              for lr in (3e-4, 3e-3, added)}
    assert all(not s.failed for ss in points.values() for s in ss)
    first = choose({lr: points[lr] for lr in (3e-4, 3e-3)})
    assert added == (first * 2 if first == 3e-3 else first / 2)  # beyond the edge that won the grid
    assert entry["chosen"] == choose(points)
    assert set(entry["points"]) == {f"{lr:g}" for lr in points}
    summary = json.loads((swept / "sweep" / f"baseline_lr{added:g}_s1" / "summary.json").read_text())
    assert entry["points"][f"{added:g}"]["seeds"][1] == {"iid_acc": summary["final_eval"]["iid_acc"],
                                                         "val_loss": summary["final_alg_val_loss"]}
    argv = doc["runs"]["baseline s0"]["argv"]
    assert float(argv[argv.index("--lr") + 1]) == entry["chosen"]
    report = (swept / "report" / "REPORT.md").read_text()
    assert "## Learning-rate sweep" in report and "![sweep](sweep.png)" in report
    assert (swept / "report" / "sweep.png").stat().st_size > 0
    section = report[report.index("## Learning-rate sweep"):report.index("## Ladder runs")]
    rows = [line for line in section.splitlines() if line.startswith("| `baseline` | ")]
    assert len(rows) == 3  # one row per rate tried
    notes = [r.split("|")[-2] for r in rows]
    assert sum("extension" in n for n in notes) == 1 and sum("chosen" in n for n in notes) == 1
    assert f"**{entry['chosen']:g}**" in section
    assert not (swept / "sweep" / "baseline_lr0.003_s0" / "eval_results").exists()  # sweeps are not evaluated


def test_restarted_ladder_recomputes_the_extension(swept, tmp_path):
    """A ladder stopped after its grid's sweep runs (before the extension trains) queues the same
    extension on the rerun from the recorded runs, and trains nothing twice."""
    def stop_after_grid(run, record):
        if run.sweep and len(list(tmp_path.glob("sweep/*/summary.json"))) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ladder(SWEEP, variants=SWEPT, out=str(tmp_path), stream=io.StringIO(), after_run=stop_after_grid)
    assert len(list(tmp_path.glob("sweep/*"))) == 4 and not (tmp_path / "runs").exists()
    grid = {p: p.stat().st_mtime_ns for p in tmp_path.glob("sweep/*/summary.json")}
    run_ladder(SWEEP, variants=SWEPT, out=str(tmp_path), stream=io.StringIO())
    assert {p: p.stat().st_mtime_ns for p in grid} == grid
    assert json.loads((tmp_path / "ladder.json").read_text())["lr_sweep"] == \
        json.loads((swept / "ladder.json").read_text())["lr_sweep"]
    assert weights(tmp_path) == weights(swept)


def test_two_lanes_train_the_same_weights(swept, tmp_path):
    """--jobs 2 runs two runs at once in worker processes; every run ends with the serial ladder's weights."""
    run_ladder(SWEEP, variants=SWEPT, out=str(tmp_path), stream=io.StringIO(), jobs=2)
    assert weights(tmp_path) == weights(swept) and len(weights(swept)) == len(SWEPT)
    assert json.loads((tmp_path / "ladder.json").read_text())["lr_sweep"] == \
        json.loads((swept / "ladder.json").read_text())["lr_sweep"]


def test_submitit_local_executor_gives_the_same_ladder(tmp_path):
    """--launcher submitit_local: each run a submitit job (as on SLURM, here local processes)."""
    pytest.importorskip("submitit")
    small = dataclasses.replace(SWEEP, sweep_seeds=1, sweep_steps=0)  # a job per process start: few jobs
    run_ladder(small, variants=SWEPT, out=str(tmp_path / "serial"), stream=io.StringIO())
    report = run_ladder(small, variants=SWEPT, out=str(tmp_path / "jobs"), stream=io.StringIO(), jobs=2,
                        launcher="submitit_local")  # its sweep and seed jobs
    assert weights(tmp_path / "jobs") == weights(tmp_path / "serial") and len(weights(tmp_path / "serial")) == 1
    assert (tmp_path / "jobs" / "submitit").is_dir() and "baseline" in table_rows(report)


def test_each_lane_sees_one_gpu(monkeypatch):
    """--jobs N on a GPU machine: worker i sees GPU i (round robin past the last); without GPUs, nothing is set."""
    import os
    import queue

    from looplab.ladder.lanes import claim_gpu, gpu_assignment, visible_gpus

    assert gpu_assignment(["0", "1"], 3) == ["0", "1", "0"] and gpu_assignment([], 2) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpus() == ["3", "5"]
    ids = queue.Queue()
    ids.put("5")
    claim_gpu(ids)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    claim_gpu(ids)  # the queue is empty: left as it was
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_arms_run_a_variant_under_other_settings(tmp_path):
    """An arm is a named (variant, options): its own run directories, its variant's learning rate and
    options underneath its own; a name that is a variant, or a variant that is not, is refused."""
    from looplab.ladder.runner import plan

    preset = dataclasses.replace(MICRO, arms={"baseline_nope": ("baseline", {"pos_encoding": "nope"})},
                                 lrs={"baseline": 4e-4}, options={"baseline": {"rope_base": 500.0}})
    runs = {r.label: r for r in plan(preset, ["baseline", "baseline_nope"], 1, "flops", tmp_path)}
    arm = runs["baseline_nope s0"]
    assert arm.dir.name == "baseline_nope_s0" and arm.launch.variant == "baseline" and arm.lr == 4e-4
    assert dict(arm.launch.options) == {"rope_base": 500.0, "pos_encoding": "nope"}
    assert dict(runs["baseline s0"].launch.options) == {"rope_base": 500.0}
    with pytest.raises(LooplabError, match="must not be a variant's name"):
        dataclasses.replace(MICRO, arms={"baseline": ("shared_loop", {})})
    with pytest.raises(LooplabError, match="allowed: baseline"):
        plan(preset, ["baseline_rope"], 1, "flops", tmp_path)
