"""Soak test of exact resume: SIGKILL a training run at random moments, resume it each time, and
check that it ends with the same weights and metrics as a run that was never interrupted.

    python scripts/soak.py --kills 20                      # tiny baseline, ~4 minutes on 2 cores
    python scripts/soak.py --kills 20 --variant prc --seed 3
    python scripts/soak.py --kills 3 -- --grad_accum 2     # extra train.py flags after --

The kill points are `--kills` distinct random steps spread over the whole run. For each, the script
starts `train.py --resume` (a fresh run until a checkpoint exists), waits until the checkpoint
before that step is written, lets the run go on to the step and a random fraction into it (timed
from the reference run's median step time), and kills it with SIGKILL: kills land between
checkpoints, inside a step, an evaluation or a checkpoint write. The report names every kill and
the largest absolute weight difference; exit status 0 only when the weights are bitwise equal and
the metrics (timing fields aside) and the final evaluation match.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("tokens_per_s",)  # metrics that measure the machine, not the run


def train_cmd(args: argparse.Namespace, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--variant", args.variant, "--model_size", "tiny",
            "--alg_tokens", str(args.tokens), "--seq_len", "64", "--batch_size", "16", "--seed", str(args.seed),
            "--eval_every_tokens", str(args.tokens // 4), "--eval_samples", "8", "--save_every_steps",
            str(args.save_every), "--threads", "1", "--no_progress", "--output_dir", str(out), *extra]


_seen: dict[Path, tuple[float, int]] = {}


def checkpoint_step(out: Path, poll: bool = False) -> int:
    """The step of `out/last_model.pt` (0 without one); with `poll`, re-read only when the file changed."""
    path = out / "last_model.pt"
    if not path.exists():
        return 0
    mtime = path.stat().st_mtime
    if poll and _seen.get(path, (None, 0))[0] == mtime:
        return _seen[path][1]
    try:
        step = int(torch.load(path, weights_only=True)["train_state"]["step"])
    except Exception:  # noqa: BLE001 - a file being replaced as we read it
        return -1
    _seen[path] = (mtime, step)
    return step


def metrics(out: Path) -> list[dict]:
    rows = json.loads((out / "metrics.json").read_text())
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def compare(ref: Path, run: Path) -> tuple[float, list[str]]:
    """Largest absolute weight difference and a list of mismatches (empty when the runs agree)."""
    a = torch.load(ref / "last_model.pt", weights_only=True)
    b = torch.load(run / "last_model.pt", weights_only=True)
    problems = []
    if a["train_state"]["step"] != b["train_state"]["step"]:
        problems.append(f"steps differ: {a['train_state']['step']} vs {b['train_state']['step']}")
    diff = max(float((a["model"][k].float() - b["model"][k].float()).abs().max()) for k in a["model"])
    if a["digest"] != b["digest"]:
        problems.append(f"weights differ (largest difference {diff:.3g})")
    ma, mb = metrics(ref), metrics(run)
    if ma != mb:
        bad = next((i for i, (x, y) in enumerate(zip(ma, mb, strict=False)) if x != y), min(len(ma), len(mb)))
        problems.append(f"metrics differ from row {bad} ({len(ma)} vs {len(mb)} rows)")
    fa = json.loads((ref / "summary.json").read_text())["final_eval"]
    fb = json.loads((run / "summary.json").read_text())["final_eval"]
    if fa != fb:
        problems.append("final evaluations differ")
    return diff, problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to land before letting the run finish")
    p.add_argument("--variant", default="baseline")
    p.add_argument("--tokens", type=int, default=327680, help="training tokens (1,024 per step)")
    p.add_argument("--save_every", type=int, default=3, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seeds the run and the kill times")
    p.add_argument("--workdir", default="runs/soak")
    p.add_argument("extra", nargs="*", help="more train.py flags (after --)")
    args = p.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    ref, run = work / "reference", work / "killed"
    t0 = time.perf_counter()
    subprocess.run(train_cmd(args, ref, args.extra), check=True, stdout=subprocess.DEVNULL)
    ref_seconds = time.perf_counter() - t0
    print(f"reference run: {ref_seconds:.1f}s")
    rng = random.Random(args.seed)
    steps = args.tokens // 1024
    rates = [r["tokens_per_s"] for r in json.loads((ref / "metrics.json").read_text()) if "tokens_per_s" in r]
    per_step = 1024 / sorted(rates)[len(rates) // 2]  # seconds per training step (median)
    # one kill in each of `kills` random checkpoint intervals at least two apart, at a random step inside it
    every = args.save_every
    intervals = sorted(2 * i for i in rng.sample(range(1, (steps // every - 1) // 2), args.kills))
    targets = [i * every + rng.randrange(every) for i in intervals]
    kills, finished = [], False
    for target in targets:
        start = checkpoint_step(run)
        if target <= start:
            continue  # an earlier attempt's checkpoint is already past it
        cmd = train_cmd(args, run, [*args.extra, "--resume"] if (run / "last_model.pt").exists() else
                        [*args.extra, "--overwrite"])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        floor = target - target % every  # the checkpoint just before the target step
        while proc.poll() is None and floor > start and checkpoint_step(run, poll=True) < floor:
            time.sleep(0.02)
        if proc.poll() is None:  # let it run on to the target, then kill anywhere inside that step
            time.sleep(((target - max(floor, start)) + rng.random()) * per_step)
        if proc.poll() is not None:  # it finished (or failed) before the kill
            if proc.returncode != 0:
                print(f"train.py failed: {proc.stderr.read().decode().strip().splitlines()[-1:]}")
                return 1
            finished = True
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(target)
        print(f"kill {len(kills):2d}: near step {target} (resumed from step {start}; last checkpoint now "
              f"step {checkpoint_step(run)})")
    if not finished:
        subprocess.run(train_cmd(args, run, [*args.extra, "--resume"]), check=True, stdout=subprocess.DEVNULL)
    diff, problems = compare(ref, run)
    print(f"{len(kills)} kills; largest weight difference {diff:.3g}")
    for line in problems:
        print(f"MISMATCH: {line}")
    if len(kills) < args.kills:
        print(f"only {len(kills)} of {args.kills} kills landed (targets closer than a checkpoint interval, or the "
              "run outpaced them); use more --tokens")
        return 1
    print("PASS: bitwise equal to the uninterrupted run" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
