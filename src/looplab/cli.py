"""The `looplab` command and the thin `train.py` / `eval_hub.py` entry points.

Every user-facing failure is a LooplabError (or an argparse error): one line on stderr naming the
problem and the allowed values, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from looplab.config import SIZES, EvalConfig, LaunchConfig, ModelConfig, TrainConfig
from looplab.errors import LooplabError, Stopped
from looplab.flags import add_flags, add_option_flags, read_flags


class Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def registry_choices() -> dict[str, list[str]]:
    """The config fields whose allowed values are a registry's names (the rest declare their own)."""
    from looplab.data.curriculum import CURRICULA
    from looplab.eval.hub import SUITE_NAMES
    from looplab.models import MODELS
    from looplab.train.trackers import TRACKERS

    return {"variant": list(MODELS), "log_to": list(TRACKERS), "task_curriculum_strategy": list(CURRICULA),
            "suite": list(SUITE_NAMES)}


# --- train ----------------------------------------------------------------------------------------
def add_train_args(p: argparse.ArgumentParser) -> None:
    """train.py's flags: LaunchConfig's and TrainConfig's fields, then the model's: ModelConfig's and each
    variant's options, each `--<option> VALUE` the same as `--model_opt <option>=VALUE`."""
    from looplab.models import MODELS

    choices = registry_choices()
    add_flags(p, LaunchConfig, choices=choices)
    add_flags(p, TrainConfig, choices=choices)
    add_option_flags(p, {"model": ModelConfig}, dest="options", title="model options (every variant)",
                     default_from={name: "the --model_size preset's" for name in SIZES["tiny"]})
    add_option_flags(p, {name: spec.options for name, spec in MODELS.items()}, dest="options")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from looplab.train.launch import launch

    cfg = TrainConfig(**read_flags(TrainConfig, args))
    summary = launch(LaunchConfig(**read_flags(LaunchConfig, args)), cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 speaks for the job
        return summary
    final = summary["final_eval"]

    def acc(key: str) -> str:  # None when no task has lengths in that split (task files without OOD lengths)
        return "n/a" if final.get(key) is None else f"{final[key]:.3f}"

    print(f"done: {summary['tokens']:,} tokens in {summary['train_seconds']:.1f}s "
          f"({summary['tokens_per_s']:,.0f} tok/s); iid acc {acc('iid_acc')}, ood acc {acc('ood_acc')}")
    print(f"artefacts: {cfg.output_dir}")
    return summary


# --- eval -----------------------------------------------------------------------------------------
def add_eval_args(p: argparse.ArgumentParser) -> None:
    """eval_hub.py's flags: EvalConfig's fields, plus where the results go and what runs them."""
    add_flags(p, EvalConfig, choices=registry_choices())
    p.add_argument("--out_dir", default=None, help="default: <checkpoint dir>/eval_results")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    from looplab.eval.hub import evaluate_checkpoint, summary_lines

    cfg = EvalConfig(**read_flags(EvalConfig, args))
    path, result = evaluate_checkpoint(cfg.checkpoint, cfg, out_dir=args.out_dir, device=args.device,
                                       threads=args.threads)
    for line in summary_lines(args.suite, result["results"]):
        print(line)
    print(f"wrote {path} in {result['metadata']['wall_seconds']:.1f}s")
    return result


def guarded(fn: Callable[[], Any]) -> int:
    """Run fn; a LooplabError becomes one line on stderr and exit status 2."""
    try:
        fn()
    except LooplabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Stopped as e:  # SIGTERM or SIGHUP to a ladder: its line says what was interrupted
        print(e, file=sys.stderr)
        return 128 + e.signum
    return 0


def _commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., Any]]]:
    from looplab.commands import COMMANDS

    return {"train": ("train a model (same flags as train.py)", add_train_args, run_train),
            "eval": ("evaluate a checkpoint (same flags as eval_hub.py)", add_eval_args, run_eval), **COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="looplab", description="Train and compare looped, latent and recurrent language models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    handlers = {}
    for name, (help_text, add_args, handler) in _commands().items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
        handlers[name] = handler
    args = parser.parse_args(argv)
    return guarded(lambda: handlers[args.command](args))


def script_main(prog: str, add_args: Callable[[argparse.ArgumentParser], None],
                handler: Callable[[argparse.Namespace], Any], argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=prog)
    add_args(parser)
    args = parser.parse_args(argv)
    return guarded(lambda: handler(args))


def train_main(argv: Sequence[str] | None = None) -> int:
    return script_main("train.py", add_train_args, run_train, argv)


def eval_main(argv: Sequence[str] | None = None) -> int:
    return script_main("eval_hub.py", add_eval_args, run_eval, argv)


if __name__ == "__main__":
    sys.exit(main())
