"""`looplab ladder --jobs 2` against `--jobs 1` on the smoke preset: wall-time ratio, same weights.

    python bench/ladder_jobs.py [--out runs/bench_ladder_jobs] [--variants baseline shared_loop ...]

Runs the smoke ladder (every generic variant unless --variants, one seed, single-thread runs) twice
in this process, serially and in two lanes, into fresh directories, and prints the wall time of
each, their ratio, and whether every run ended with the same weights (the digests of its
best_model.pt and last_model.pt). The preset's per-run time cap is lifted, so that a run's length
depends on its competence checks only, never on how busy the machine is. Not in `make bench`:
it takes about a quarter of an hour on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import time
from pathlib import Path

from common import figure

from looplab.io import read_payload
from looplab.ladder import PRESETS, run_ladder


def digests(root: Path) -> dict[str, tuple[str, str]]:
    return {d.name: (read_payload(d / "best_model.pt")["digest"], read_payload(d / "last_model.pt")["digest"])
            for d in sorted((root / "runs").iterdir())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_ladder_jobs")
    ap.add_argument("--variants", nargs="+", default=None)
    args = ap.parse_args()
    smoke = PRESETS["smoke"]
    preset = dataclasses.replace(smoke, train={**smoke.train, "max_minutes": 0.0})
    out = Path(args.out)
    seconds = {}
    for jobs in (1, 2):
        root = out / f"jobs{jobs}"
        if root.exists():
            raise SystemExit(f"{root} exists; choose another --out")
        t0 = time.perf_counter()
        run_ladder(preset, variants=args.variants, out=str(root), jobs=jobs, stream=io.StringIO())
        seconds[jobs] = time.perf_counter() - t0
        print(f"smoke ladder, --jobs {jobs}: {seconds[jobs]:.0f}s", flush=True)
    one, two = digests(out / "jobs1"), digests(out / "jobs2")
    same = one == two and len(one) > 0
    print(f"runs: {len(one)}; final weights {'identical in every run' if same else 'DIFFER'}"
          + ("" if same else f" ({sorted(k for k in one if one[k] != two.get(k))})"))
    ok = figure("ladder_jobs2_speedup (jobs1 wall / jobs2 wall)", seconds[1] / seconds[2], ">=", 1.3, "x")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
