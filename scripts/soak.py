"""Soak test of exact resume: SIGKILL a training run at random moments, resume it each time, and
check that it ends with the same weights and metrics as a run that was never interrupted.

    python scripts/soak.py --kills 20                      # tiny baseline, ~4 minutes on 2 cores
    python scripts/soak.py --kills 20 --variant prc --seed 3
    python scripts/soak.py --kills 3 -- --grad_accum 2     # extra train.py flags after --

Each attempt starts `train.py --resume` (a fresh run until the first checkpoint exists), sleeps a
random time and kills it with SIGKILL; kills that land after the run finished do not count. The
report names every kill (the step it resumed from, the step the killed process had reached) and the
largest absolute weight difference; exit status 0 only when the weights are bitwise equal and the
metrics (timing fields aside) match.
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


def checkpoint_step(out: Path) -> int:
    path = out / "last_model.pt"
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, weights_only=True)["train_state"]["step"])
    except Exception:  # noqa: BLE001 - a file being replaced as we read it
        return -1


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
    p.add_argument("--max_attempts", type=int, default=200)
    p.add_argument("--min_sleep", type=float, default=2.5, help="seconds before a kill (start-up is ~2 s)")
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
    spread = 2 * max(1.0, ref_seconds - args.min_sleep) / (args.kills + 5)  # ~kills + 5 attempts fill the run
    kills, attempts, finished = [], 0, False
    while len(kills) < args.kills and attempts < args.max_attempts:
        attempts += 1
        start = checkpoint_step(run)
        cmd = train_cmd(args, run, [*args.extra, "--resume"] if (run / "last_model.pt").exists() else
                        [*args.extra, "--overwrite"])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(args.min_sleep, args.min_sleep + spread))
        if proc.poll() is not None:  # it finished (or failed) before the kill
            err = proc.stderr.read().decode()
            if proc.returncode != 0:
                print(f"attempt {attempts}: train.py failed: {err.strip().splitlines()[-1:]}")
                return 1
            finished = True
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reached = checkpoint_step(run)
        kills.append((start, reached))
        print(f"kill {len(kills):2d}: resumed from step {start}, last checkpoint now at step {reached}")
    if not finished:
        subprocess.run(train_cmd(args, run, [*args.extra, "--resume"]), check=True, stdout=subprocess.DEVNULL)
    diff, problems = compare(ref, run)
    print(f"{len(kills)} kills in {attempts} attempts; largest weight difference {diff:.3g}")
    for line in problems:
        print(f"MISMATCH: {line}")
    if len(kills) < args.kills:
        print(f"only {len(kills)} of {args.kills} kills landed; use more --tokens")
        return 1
    print("PASS: bitwise equal to the uninterrupted run" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
