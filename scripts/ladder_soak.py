"""Kill-and-rerun soak of the ladder itself.

    python scripts/ladder_soak.py --kills 10 [--kinds group,term,kill] [--jobs 2] [--out runs/ladder_soak] [--seed 0]

1. Runs a small ladder (two variants, a learning-rate sweep, two seeds) to the end: the reference.
2. Runs the same ladder in another directory and stops it at a random moment (0-0.3 s) after this
   launch is seen training a run or scoring one (it has written that run's record), in turn, and
   (the last two kills, or every kill once all runs are finished) with every run finished, while
   the report is written; it reruns the same command each time, until `--kills` kills have landed;
   the last rerun finishes. The kinds of kill take
   turns (`--kinds`): `group`, SIGKILL to the whole process group (the ladder and its lane workers);
   `term`, SIGTERM to the ladder process alone (what `kill PID` or a scheduler sends); `kill`,
   SIGKILL to the ladder process alone.
3. Checks after each kill that no process of the ladder is left (within 5 s of a `term`, 2 s of a
   `kill`) and, after a `term`, that the ladder exited with status 143, one stderr line and its
   lock released. At the end: the final `ladder.json` and `REPORT.md` equal the reference's
   (timings aside), every run ends with the reference's weights, and no run was trained twice past
   its last checkpoint: after each kill (once its processes are gone) it notes every run's
   resumable step, and the next attempt of that run must start there (and a finished run must not
   start again).

Exit status 0 when everything holds; each failed check is printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from looplab.cli import guarded
from looplab.ladder import LadderPreset, run_ladder
from looplab.ladder.lock import LOCK
from looplab.ladder.procs import alive, descendants
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


KINDS = {"group": "SIGKILL to the process group", "term": "SIGTERM to the ladder alone",
         "kill": "SIGKILL to the ladder alone"}
GONE_S = {"group": 2.0, "term": 5.0, "kill": 2.0}  # how soon after the ladder's exit no process of it may be left


def child(out: str, jobs: int) -> int:
    """The ladder as the command line runs it; stderr holds only what the command would say."""
    return guarded(lambda: run_ladder(PRESET, variants=VARIANTS, out=out, jobs=jobs, stream=io.StringIO()))


def launch(out: Path, jobs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", str(out), "--jobs", str(jobs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def left_after(pids: set[int], seconds: float) -> list[int]:
    """The processes of `pids` still alive after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def stop(proc: subprocess.Popen, kind: str) -> tuple[int, str, list[int]]:
    """Kill the ladder the `kind` way; returns its exit status, its stderr, and what it left alive."""
    workers = descendants(proc.pid)
    if kind == "group":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGTERM if kind == "term" else signal.SIGKILL)
    _, err = proc.communicate()
    return proc.returncode, err, left_after(workers, GONE_S[kind])


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
    seeds = [d for d in done if not d.startswith("sweep/")]  # planned once a variant's sweep has settled
    return len(seeds) < len(VARIANTS) * PRESET.seeds or not all(f for _, f in done.values())


def touched(d: Path, since: float) -> bool:
    """Whether this launch has started work on run directory `d` (it writes the run's record first)."""
    try:
        return (d / RECORD).stat().st_mtime >= since
    except FileNotFoundError:
        return False


def in_phase(phase: str, root: Path, since: float) -> bool:
    """Whether the ladder launched at `since` is visibly in `phase`: a run it took up training
    (config.json, no summary), a trained run it took up being scored (summary, no results), or every
    run finished (the report is next)."""
    dirs = [d for d in run_dirs(root) if touched(d, since)]
    if phase == "training":
        return any((d / "config.json").exists() and not (d / "summary.json").exists() for d in dirs)
    if phase == "evaluation":
        return any(d.parent.name == "runs" and (d / "summary.json").exists()
                   and not (d / "eval_results" / f"results_{PRESET.suite}.json").exists() for d in dirs)
    return not unfinished(root)


def wait_for(phase: str, root: Path, proc: subprocess.Popen, since: float) -> bool:
    """Poll until the ladder is in `phase` (True) or has exited (False)."""
    while proc.poll() is None:
        if in_phase(phase, root, since):
            return True
        time.sleep(0.02)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"kinds of kill, in turn: {', '.join(KINDS)}")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/ladder_soak")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.jobs)
    kinds = args.kinds.split(",")
    if not kinds or any(k not in KINDS for k in kinds):
        raise SystemExit(f"--kinds: choose from {', '.join(KINDS)}")
    rng = random.Random(args.seed)
    out = Path(args.out)
    ref, soak = out / "reference", out / "killed"
    for d in (ref, soak):
        if d.exists():
            raise SystemExit(f"{d} exists; choose another --out")
    t0 = time.monotonic()
    proc = launch(ref, args.jobs)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the reference ladder failed: {err.strip()}")
    ref_seconds = time.monotonic() - t0
    print(f"reference ladder: {ref_seconds:.1f}s")

    problems: list[str] = []
    seen: dict[str, int] = {}  # attempts per run already checked
    expected: dict[str, tuple[int, bool]] = {}  # per run: resumable step and finished, at the last kill
    kills = restarts = 0
    landed = {phase: 0 for phase in PHASES}
    by_kind = {kind: 0 for kind in kinds}
    while True:
        since = time.time()
        proc = launch(soak, args.jobs)
        restarts += 1
        last = kills >= args.kills
        if not last:
            # training and scoring in turn while runs remain; the last two kills (and any once every
            # run is finished) while the report is written
            phase = PHASES[kills % 2] if unfinished(soak) and kills < args.kills - 2 else "report"
            kind = kinds[kills % len(kinds)]
            if wait_for(phase, soak, proc, since):
                time.sleep(rng.uniform(0.0, 0.3))
                if proc.poll() is None:
                    status, err, left = stop(proc, kind)
                    kills += 1
                    landed[phase] += 1
                    by_kind[kind] += 1
                    note = f" (exit {status}: {err.strip()})" if kind == "term" else ""
                    print(f"kill {kills} during {phase}: {KINDS[kind]}{note}", flush=True)
                    if left:
                        problems.append(f"kill {kills} ({kind}): processes {sorted(left)} outlived the ladder")
                    if kind == "term" and status != 0 and (status != 128 + signal.SIGTERM or len(err.strip().splitlines()) != 1
                                           or (soak / LOCK).read_text() != ""):
                        problems.append(f"kill {kills} (term): exit {status}, stderr {err!r}, lock "
                                        f"{(soak / LOCK).read_text()!r}")
        if not proc.stderr.closed:  # not stopped (or the last rerun): wait for it to exit
            proc.communicate()
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
    print(f"{kills} kills ({', '.join(f'{n} during {p}' for p, n in landed.items())}; "
          f"{', '.join(f'{n} {KINDS[k]}' for k, n in by_kind.items())}), {restarts} launches; "
          + ("ladder.json, REPORT.md and every run's weights equal the reference's; no run trained twice past "
             "its last checkpoint" if not problems else "FAILED"))
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
