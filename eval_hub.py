"""Evaluate a checkpoint: `python eval_hub.py --checkpoint runs/x/best_model.pt --suite algorithmic`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from looplab.cli import eval_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(eval_main())
