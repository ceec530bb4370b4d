"""Kill-and-rerun soak of the ladder itself.

    python scripts/ladder_soak.py --kills 10 [--jobs 2] [--out runs/ladder_soak] [--seed 0]

1. Runs a small ladder (two variants, a learning-rate sweep, two seeds) to the end: the reference.
2. Runs the same ladder in another directory and SIGKILLs its whole process group (the ladder and
   its lane workers) at a random moment (0-0.3 s) after it is seen training a run or scoring one, in
   turn, and (the last two kills, or every kill once all runs are finished) with every run finished,
   while the report is written; it reruns the same command each time, until `--kills` kills have
   landed; the last rerun finishes.
3. Checks that the final `ladder.json` and `REPORT.md` equal the reference's (timings aside), that
   every run ends with the reference's weights, and that no run was trained twice past its last
   checkpoint: after each kill it notes every run's resumable step, and the next attempt of that
   run must start there (and a finished run must not start again).

Exit status 0 when everything holds; each failed check is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from looplab.ladder import LadderPreset, run_ladder
from looplab.ladder.runs import RECORD, checkpoint_step, stage

PRESET = LadderPreset(
    name="soak", note="ladder soak", size="tiny",
    train=dict(alg_tasks=("copy", "successor"), alg_tokens=12_288, total_tokens=12_288, seq_len=24, batch_size=16,
               packing="single", warmup_tokens=768, eval_every_tokens=3_072, eval_samples=8, competence=0.95),
    evaluation=dict(suite="algorithmic", samples=8), n_loops=(1, 2),
    lr_grid=(5e-4, 2e-3), sweep_tokens=1_536, threads=1, seeds=2,
)
VARIANTS = ("baseline", "shared_loop")
TIMING = re.compile(r"_seconds|tokens_per_s|wall|time|duration|^seconds$")


def child(out: str, jobs: int) -> None:
    run_ladder(PRESET, variants=VARIANTS, out=out, jobs=jobs)


def launch(out: Path, jobs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", str(out), "--jobs", str(jobs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def strip(obj: object, root: Path) -> object:
    """The document without wall-time fields and attempts, its paths relative to `root` (the two
    ladders live in different directories)."""
    if isinstance(obj, dict):
        return {k: strip(v, root) for k, v in obj.items() if not TIMING.search(k) and k != "attempts"}
    if isinstance(obj, list):
        return [strip(v, root) for v in obj]
    return obj.replace(str(root), "<out>") if isinstance(obj, str) else obj


def report_text(root: Path) -> str:
    text = (root / "report" / "REPORT.md").read_text().replace(str(root), "<out>")
    text = re.sub(r"\| [0-9.]+x \|\n", "| <time> |\n", text)  # train time per token against the baseline
    text = re.sub(r"\| (\d+|n/a) \| (\d+|n/a) \| ([^|]*) \|\n", r"| <s> | <s> | \3 |\n", text)  # train s, eval s
    return re.sub(r"(Train time \|.*)", "Train time | <time>", text)


def weights(root: Path) -> dict[str, str]:
    from looplab.io import read_payload

    return {p.parent.name: read_payload(p)["digest"] for p in sorted((root / "runs").glob("*/best_model.pt"))}


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (*root.glob("runs/*"), *root.glob("sweep/*")) if p.is_dir())


def snapshot(root: Path) -> dict[str, tuple[int, bool]]:
    """Per run directory: the step it would resume from, and whether it is finished."""
    out = {}
    for d in run_dirs(root):
        suite = None if d.parent.name == "sweep" else PRESET.suite
        out[d.name if d.parent.name == "runs" else f"sweep/{d.name}"] = (checkpoint_step(d), stage(d, suite) == "finished")
    return out


def attempts(root: Path) -> dict[str, list[dict]]:
    out = {}
    for d in run_dirs(root):
        rec = d / RECORD
        if rec.exists():
            out[d.name if d.parent.name == "runs" else f"sweep/{d.name}"] = json.loads(rec.read_text()).get("attempts", [])
    return out


PHASES = ("training", "evaluation", "report")


def unfinished(root: Path) -> bool:
    """Some run still has training or evaluation to do (or the ladder has not planned them all yet)."""
    done = snapshot(root)
    return len(done) < len(VARIANTS) * (len(PRESET.lr_grid) + PRESET.seeds) or not all(f for _, f in done.values())


def in_phase(phase: str, root: Path) -> bool:
    """Whether the ladder in `root` is visibly in `phase`: a run training (config.json, no summary),
    a trained run being scored (summary, no results), or every run finished (the report is next)."""
    dirs = run_dirs(root)
    if phase == "training":
        return any((d / "config.json").exists() and not (d / "summary.json").exists() for d in dirs)
    if phase == "evaluation":
        return any(d.parent.name == "runs" and (d / "summary.json").exists()
                   and not (d / "eval_results" / f"results_{PRESET.suite}.json").exists() for d in dirs)
    return not unfinished(root)


def wait_for(phase: str, root: Path, proc: subprocess.Popen) -> bool:
    """Poll until the ladder is in `phase` (True) or has exited (False)."""
    while proc.poll() is None:
        if in_phase(phase, root):
            return True
        time.sleep(0.02)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/ladder_soak")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.jobs)
        return 0
    rng = random.Random(args.seed)
    out = Path(args.out)
    ref, soak = out / "reference", out / "killed"
    for d in (ref, soak):
        if d.exists():
            raise SystemExit(f"{d} exists; choose another --out")
    t0 = time.monotonic()
    proc = launch(ref, args.jobs)
    if proc.wait() != 0:
        raise SystemExit("the reference ladder failed")
    ref_seconds = time.monotonic() - t0
    print(f"reference ladder: {ref_seconds:.1f}s")

    problems: list[str] = []
    seen: dict[str, int] = {}  # attempts per run already checked
    expected: dict[str, tuple[int, bool]] = {}  # per run: resumable step and finished, at the last kill
    kills = restarts = 0
    landed = {phase: 0 for phase in PHASES}
    while True:
        proc = launch(soak, args.jobs)
        restarts += 1
        last = kills >= args.kills
        if not last:
            # training and scoring in turn while runs remain; the last two kills (and any once every
            # run is finished) while the report is written
            phase = PHASES[kills % 2] if unfinished(soak) and kills < args.kills - 2 else "report"
            if wait_for(phase, soak, proc):
                time.sleep(rng.uniform(0.0, 0.3))
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    kills += 1
                    landed[phase] += 1
                    print(f"kill {kills} during {phase}", flush=True)
            proc.wait()
        else:
            proc.wait()
        for name, runs in attempts(soak).items():  # the attempts made since the previous kill
            for attempt in runs[seen.get(name, 0):]:
                step, finished = expected.get(name, (0, False))
                if finished:
                    problems.append(f"{name}: trained again after it had finished")
                elif attempt["from_step"] != step:
                    problems.append(f"{name}: attempt started at step {attempt['from_step']}, its checkpoint "
                                    f"was at step {step}")
            seen[name] = len(runs)
        expected = snapshot(soak)
        if last:
            break
    if proc.returncode != 0:
        problems.append(f"the final rerun exited with {proc.returncode}")
    a, b = json.loads((ref / "ladder.json").read_text()), json.loads((soak / "ladder.json").read_text())
    if strip(a, ref) != strip(b, soak):
        problems.append("ladder.json differs from the reference (timings aside)")
    if report_text(ref) != report_text(soak):
        problems.append("REPORT.md differs from the reference (timings aside)")
    if weights(ref) != weights(soak):
        problems.append("final weights differ from the reference")
    print(f"{kills} kills ({', '.join(f'{n} during {p}' for p, n in landed.items())}), {restarts} launches; "
          + ("ladder.json, REPORT.md and every run's weights equal the reference's; no run trained twice past "
             "its last checkpoint" if not problems else "FAILED"))
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
