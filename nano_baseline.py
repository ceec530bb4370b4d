"""Train the learned absolute-position control: `python nano_baseline.py --model_size tiny ...`.

The same flags as train.py; the variant is always `absolute` (learned position table, no RoPE),
the control for the hypothesis that absolute positions fail on inputs longer than trained.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from looplab.cli import add_train_args, run_train, script_main  # noqa: E402
from looplab.errors import LooplabError  # noqa: E402


def add_args(parser):
    add_train_args(parser)
    parser.set_defaults(variant="absolute")


def run(args):
    if args.variant != "absolute":
        raise LooplabError(f"nano_baseline.py always trains variant 'absolute', got --variant {args.variant}; "
                           "use train.py for other variants")
    return run_train(args)


if __name__ == "__main__":
    sys.exit(script_main("nano_baseline.py", add_args, run))
