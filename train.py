"""Train a looplab model: `python train.py --model_size tiny --variant baseline ...` (see --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from looplab.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
