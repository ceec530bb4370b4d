"""Give a ladder that ran before `wall.json` existed its wall-time record, from its console logs.

    .venv/bin/python scripts/ladder_wall.py runs/cpu_v2 runs/cpu_v2.session3.log runs/cpu_v2.log

Each log is one invocation of the ladder; its time is the last elapsed time its progress bar printed
(the bar prints after every finished run, so an invocation killed mid-run counts up to its last
finished run: a lower bound). A later invocation of the ladder appends its own entry (ladder.wall).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from looplab.errors import LooplabError  # noqa: E402
from looplab.ladder.wall import seed_from_console, total_seconds  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ladder", type=Path, help="the ladder's --out directory")
    ap.add_argument("logs", type=Path, nargs="+", help="its console logs, one per invocation, in order")
    args = ap.parse_args()
    try:
        seed_from_console(args.ladder, args.logs)
    except (LooplabError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.ladder}/wall.json: {total_seconds(args.ladder) / 60:.1f} minutes over {len(args.logs)} invocations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
