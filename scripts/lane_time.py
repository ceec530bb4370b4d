"""Where each ladder's time went: its sweep, training and evaluation lane-minutes, and its costliest evaluations.

    .venv/bin/python scripts/lane_time.py docs/results/cpu docs/results/axes docs/results/axes_succ

Reads each ladder's `ladder.json` (the directory's, or the file itself) and prints the line a ladder
report states under its wall time (ladder.summary.lane_line), after the wall time of `wall.json` when
there is one. Two lanes run side by side, so a ladder's wall time is about the sum of its lane-minutes
over two, plus the idle tail of its last runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from looplab.errors import LooplabError  # noqa: E402
from looplab.ladder import wall  # noqa: E402
from looplab.ladder.summary import lane_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ladders", type=Path, nargs="+", help="ladder directories (or their ladder.json)")
    ap.add_argument("--top", type=int, default=3, help="arms named for their evaluation time (default 3)")
    args = ap.parse_args(argv)
    for path in args.ladders:
        root = path.parent if path.is_file() else path
        try:
            doc = json.loads((root / "ladder.json").read_text())
            minutes = wall.total_seconds(root) / 60
        except (OSError, ValueError, LooplabError) as e:
            print(f"error: {root}: {e}", file=sys.stderr)
            return 2
        print(f"{root}: wall {minutes:.0f} min. {lane_line(doc, args.top)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
