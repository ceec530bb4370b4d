"""`make bench`: run every benchmark under bench/ in its own process and print its figure lines.

Each benchmark prints `name: value (target OP value) PASS|FAIL` lines, with its reference measured in
the same process. This runner exits non-zero if any line says FAIL or a benchmark crashes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-2000:])
            failed.append(script.name)
        failed += [f"{script.name}: {line}" for line in proc.stdout.splitlines() if line.endswith("FAIL")]
    print(f"\n{'all benchmarks pass' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
