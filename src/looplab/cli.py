"""The `looplab` command and the thin `train.py` / `eval_hub.py` entry points.

Every user-facing failure is a LooplabError (or an argparse error): one line on stderr naming the
problem and the allowed values, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from looplab.errors import LooplabError


class Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.lower(), text)


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise LooplabError(f"--model_opt expects KEY=VALUE, got '{pair}'")
        key, value = pair.split("=", 1)
        out[key.strip()] = _literal(value.strip())
    return out


def split_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """Accept `--tasks a b`, `--tasks a,b` or a mix."""
    return tuple(n for v in values or () for n in v.split(",") if n)


def parse_loops(values: Sequence[str] | None) -> tuple[int, ...]:
    """`--n_loops 1,2,4` or `--n_loops 1 2 4`: positive integers, kept in the given order."""
    names = split_names(values)
    if not all(n.isdigit() and int(n) > 0 for n in names):
        raise LooplabError(f"--n_loops expects positive integers such as 1,2,4,8,16, got {','.join(names)}")
    return tuple(int(n) for n in names)


# --- train ----------------------------------------------------------------------------------------
def add_train_args(p: argparse.ArgumentParser) -> None:
    from looplab.config import DEVICES, DTYPES, LOSS_ON, NONFINITE, PACKING, SIZES, TrainConfig
    from looplab.models import MODELS
    from looplab.train.parallel import PARALLEL
    from looplab.train.trackers import TRACKERS

    d = TrainConfig()
    p.add_argument("--variant", default="baseline", choices=list(MODELS), help="model variant")
    p.add_argument("--model_size", default="tiny", choices=list(SIZES), help="size preset")
    p.add_argument("--alg_tokens", type=int, default=d.alg_tokens, help="algorithmic tokens (phase 1)")
    p.add_argument("--total_tokens", type=int, default=None, help="all training tokens (default: alg_tokens)")
    p.add_argument("--alg_tasks", nargs="+", default=None, help="algorithmic tasks (default: all ten; 'none': --task_file tasks only)")
    p.add_argument("--output_dir", default=d.output_dir)
    p.add_argument("--tokenizer", default=None, help="bytes (default), a .model, tokenizer.json, directory or hub name")
    p.add_argument("--allow_network", action="store_true", help="allow downloading a hub tokenizer")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CPU: ~1.1x faster steps after a ~40 s compile; pays off in runs over ~7 minutes)")
    p.add_argument("--eval_samples", type=int, default=d.eval_samples,
                   help="examples per in-distribution (task, length) cell at each periodic evaluation")
    p.add_argument("--competence", type=float, default=d.competence, help="stop once every task's in-distribution "
                   "exact match reaches this at a periodic evaluation, e.g. 0.95 (0: train the whole budget)")
    p.add_argument("--eval_max_new_tokens", type=int, default=d.eval_max_new_tokens)
    p.add_argument("--eval_every_tokens", type=int, default=d.eval_every_tokens)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup_tokens", type=int, default=d.warmup_tokens)
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--seq_len", type=int, default=d.seq_len)
    p.add_argument("--loss_on", default=d.loss_on, choices=LOSS_ON)
    p.add_argument("--packing", default=d.packing, choices=PACKING,
                   help="packed: examples back to back in a row; single: one example per row (isolated)")
    p.add_argument("--device", default=d.device, choices=DEVICES)
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES)
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads (0: all cores)")
    p.add_argument("--max_minutes", type=float, default=0.0, help="stop training after this wall time")
    p.add_argument("--model_opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model field or variant option (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --output_dir")
    p.add_argument("--base", default="", help="rlf: the frozen base, a looplab checkpoint or a Hugging Face model "
                   "directory (its tokenizer is used)")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.add_argument("--log_to", default=d.log_to, choices=list(TRACKERS),
                   help="also send the metrics to a tracker (wandb runs offline unless WANDB_MODE is set)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output_dir from last_model.pt "
                   "(exactly: the same weights as a run never stopped)")
    p.add_argument("--log_every", type=int, default=d.log_every, help="optimiser steps between logged metrics rows")
    p.add_argument("--save_every_steps", type=int, default=d.save_every_steps,
                   help="also write last_model.pt every N steps (0: at evaluations only)")
    p.add_argument("--on_nonfinite", default=d.on_nonfinite, choices=NONFINITE,
                   help="a NaN/inf loss stops the run (default) or skips that step's update")
    p.add_argument("--max_skipped_steps", type=int, default=d.max_skipped_steps,
                   help="with --on_nonfinite skip: stop after this many consecutive skipped steps")
    p.add_argument("--grad_accum", type=int, default=d.grad_accum,
                   help="micro-batches per step and process; --batch_size stays the global batch")
    p.add_argument("--parallel", default=d.parallel, choices=PARALLEL,
                   help="under torchrun: ddp, fsdp (FSDP2) or auto (fsdp from 250M parameters)")
    p.add_argument("--lang_data", default="", help="language data for phase 2: .txt/.jsonl/.parquet, a directory, "
                   "or hf:NAME (with --allow_network)")
    p.add_argument("--text_field", default=d.text_field, help="text field of .jsonl/.parquet/hf records")
    p.add_argument("--lang_val_fraction", type=float, default=d.lang_val_fraction,
                   help="share of documents held out for validation loss")
    p.add_argument("--lang_cache_dir", default="", help="token cache (default: $LOOPLAB_CACHE or ~/.cache/looplab)")
    p.add_argument("--alg_replay", type=float, default=0.0, metavar="FRACTION",
                   help="share of language-phase steps replaying algorithmic data (measures forgetting)")
    p.add_argument("--task_file", action="append", default=[], metavar="PATH",
                   help="JSONL tasks {task, length, prompt, target} to train on as well (repeatable)")
    p.add_argument("--use_task_curriculum", action="store_true", help="per-task difficulty from competence")
    p.add_argument("--task_curriculum_strategy", default=d.task_curriculum_strategy, choices=("linear", "dag"))
    p.add_argument("--curriculum_every", type=int, default=d.curriculum_every, help="steps between competence probes")
    p.add_argument("--curriculum_samples", type=int, default=d.curriculum_samples, help="examples per task per probe")
    p.add_argument("--curriculum_cooldown", type=int, default=d.curriculum_cooldown,
                   help="steps between two difficulty changes of a task")
    p.add_argument("--curriculum_min_task_evals", type=int, default=d.curriculum_min_task_evals,
                   help="probes at a difficulty before it may change")
    p.add_argument("--curriculum_jitter", type=float, default=d.curriculum_jitter,
                   help="probability of an easier sample than the current difficulty")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from looplab.config import TrainConfig, model_config
    from looplab.data.tokenizer import load_tokenizer
    from looplab.models import get_spec, variant_options
    from looplab.train.trainer import train

    total = args.total_tokens if args.total_tokens is not None else args.alg_tokens
    cfg = TrainConfig(
        output_dir=args.output_dir, alg_tokens=args.alg_tokens, total_tokens=total,
        alg_tasks=split_names(args.alg_tasks), seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
        warmup_tokens=args.warmup_tokens, weight_decay=args.weight_decay, loss_on=args.loss_on, packing=args.packing, seed=args.seed,
        device=args.device, dtype=args.dtype, compile=args.compile, threads=args.threads,
        eval_every_tokens=args.eval_every_tokens, eval_samples=args.eval_samples, competence=args.competence,
        eval_max_new_tokens=args.eval_max_new_tokens, max_minutes=args.max_minutes,
        progress=not args.no_progress, log_to=args.log_to, lang_data=args.lang_data, text_field=args.text_field,
        lang_val_fraction=args.lang_val_fraction, lang_cache_dir=args.lang_cache_dir,
        allow_network=args.allow_network, alg_replay=args.alg_replay, task_files=tuple(args.task_file),
        use_task_curriculum=args.use_task_curriculum, task_curriculum_strategy=args.task_curriculum_strategy,
        curriculum_every=args.curriculum_every, curriculum_samples=args.curriculum_samples,
        curriculum_cooldown=args.curriculum_cooldown, curriculum_min_task_evals=args.curriculum_min_task_evals,
        curriculum_jitter=args.curriculum_jitter, save_every_steps=args.save_every_steps,
        on_nonfinite=args.on_nonfinite, max_skipped_steps=args.max_skipped_steps, grad_accum=args.grad_accum,
        parallel=args.parallel, log_every=args.log_every,
    )
    from looplab.data.tasks import NO_TASKS, training_tasks

    # validate names before anything is written
    own_data = get_spec(args.variant).train_data is not None  # a variant with its own stream (rlf) needs no tasks
    if not training_tasks(cfg.alg_tasks) and not cfg.task_files and not own_data:
        raise LooplabError(f"--alg_tasks {NO_TASKS} needs at least one --task_file to train on")
    options = parse_options(args.model_opt)
    if args.variant == "rlf":
        from looplab.models.rlf_base import prepare_base

        tokenizer, base_options = prepare_base(args.base, args.tokenizer)
        options.update(base_options)
    elif args.base:
        raise LooplabError(f"--base applies to --variant rlf only, not '{args.variant}'")
    else:
        tokenizer = load_tokenizer(args.tokenizer, allow_network=args.allow_network)
    mcfg = model_config(args.model_size, tokenizer.vocab_size, args.variant, **options)
    variant_options(mcfg)
    summary = train(mcfg, cfg, tokenizer, overwrite=args.overwrite, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 speaks for the job
        return summary
    final = summary["final_eval"]

    def acc(key: str) -> str:  # None when no task has lengths in that split (task files without OOD lengths)
        return "n/a" if final.get(key) is None else f"{final[key]:.3f}"

    print(f"done: {summary['tokens']:,} tokens in {summary['train_seconds']:.1f}s "
          f"({summary['tokens_per_s']:,.0f} tok/s); iid acc {acc('iid_acc')}, ood acc {acc('ood_acc')}")
    print(f"artefacts: {args.output_dir}")
    return summary


# --- eval -----------------------------------------------------------------------------------------
def add_eval_args(p: argparse.ArgumentParser) -> None:
    from looplab.config import EvalConfig
    from looplab.eval.hub import SUITE_NAMES

    p.add_argument("--checkpoint", required=True, help="a .pt file written by train.py")
    p.add_argument("--suite", default="algorithmic", choices=SUITE_NAMES)
    p.add_argument("--out_dir", default=None, help="default: <checkpoint dir>/eval_results")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to evaluate (default: the trained ones)")
    p.add_argument("--samples", "--eval_samples", dest="samples", type=int, default=100,
                   help="examples per task and length")
    p.add_argument("--max_new_tokens", "--eval_max_new_tokens", dest="max_new_tokens", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no_cache", action="store_true", help="decode by full recomputation (slow reference)")
    p.add_argument("--n_loops", nargs="+", default=None, metavar="N",
                   help="also evaluate looped variants at these loop counts, e.g. 1,2,4,8,16 (others: ignored)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", action="append", default=[], metavar="PATH",
                   help="task file (JSONL) for --suite custom (repeatable)")
    e = EvalConfig()
    p.add_argument("--needle_lengths", nargs="+", default=None, metavar="N",
                   help=f"longctx haystack sizes in tokens (default {','.join(map(str, e.needle_lengths))})")
    p.add_argument("--needle_depths", nargs="+", default=None, metavar="F",
                   help="longctx needle depths as fractions 0..1 (default 0,0.5,1; finer: 0,0.25,0.5,0.75,1)")
    p.add_argument("--needle_trials", type=int, default=e.needle_trials, help="longctx prompts per length and depth")
    p.add_argument("--lang_data", default="", help="ppl validation text (default: ../shared/data/tinystories/"
                   "valid_sample.txt when present)")
    p.add_argument("--ppl_tokens", type=int, default=e.ppl_tokens, help="ppl token cap")


def parse_numbers(values: Sequence[str] | None, flag: str, kind: type) -> tuple:
    """`--flag 1,2 3` -> (1, 2, 3) of `kind`; a value that is not a number is a one-line error."""
    try:
        return tuple(kind(n) for n in split_names(values))
    except ValueError:
        raise LooplabError(f"{flag} expects numbers such as 1024,2048, got {','.join(split_names(values))}") from None


def needle_grid(args: argparse.Namespace) -> dict[str, tuple]:
    """The longctx lengths and depths given on the command line (the rest keep EvalConfig's defaults)."""
    grid = {"needle_lengths": parse_numbers(args.needle_lengths, "--needle_lengths", int),
            "needle_depths": parse_numbers(args.needle_depths, "--needle_depths", float)}
    return {k: v for k, v in grid.items() if v}


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    from looplab.config import EvalConfig
    from looplab.eval.hub import evaluate_checkpoint, summary_lines

    cfg = EvalConfig(suite=args.suite, tasks=split_names(args.tasks), samples=args.samples,
                     max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                     use_cache=not args.no_cache, n_loops=parse_loops(args.n_loops), data=tuple(args.data),
                     needle_trials=args.needle_trials, lang_data=args.lang_data, ppl_tokens=args.ppl_tokens,
                     **needle_grid(args))
    path, result = evaluate_checkpoint(args.checkpoint, cfg, out_dir=args.out_dir, device=args.device,
                                       threads=args.threads)
    for line in summary_lines(args.suite, result["results"]):
        print(line)
    print(f"wrote {path} in {result['metadata']['wall_seconds']:.1f}s")
    return result


# --- report ---------------------------------------------------------------------------------------
def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="training output directories (several seeds each)")
    p.add_argument("--out", default="report", help="where REPORT.md and the plots go")
    p.add_argument("--match", default="flops", help="the figure a verdict needs within 10%% of the baseline's: "
                   "flops (default), params, or config (judged on FLOPs)")


def run_report(args: argparse.Namespace) -> None:
    from looplab.eval.report import write_report

    path = write_report(args.run_dirs, args.out, match=args.match)
    print(f"wrote {path}")


# --- ladder ---------------------------------------------------------------------------------------
def add_ladder_args(p: argparse.ArgumentParser) -> None:
    from looplab.ladder import PRESETS
    from looplab.ladder.lanes import LAUNCHERS, SlurmOptions

    p.add_argument("--preset", default="smoke", help=f"one of {', '.join(PRESETS)} (default smoke, the demo's); "
                   "see looplab.ladder.presets")
    p.add_argument("--variants", nargs="+", default=None, help="variants to train (default: the preset's, else "
                   "every generic one)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per variant (default: the preset's)")
    p.add_argument("--match", default="flops", help="flops (default: training FLOPs per token matched to the "
                   "baseline's), params, or config (same size preset; verdicts withheld where FLOPs differ)")
    p.add_argument("--jobs", type=int, default=None, help="runs at once: local lanes sharing the CPU threads, or "
                   "cluster jobs in flight (default: the preset's)")
    p.add_argument("--out", default=None, help="ladder directory (default runs/ladder_<preset>); reruns resume")
    p.add_argument("--launcher", default="local", choices=LAUNCHERS, help="local (this machine), slurm (one "
                   "submitit job per run; needs looplab[slurm]), submitit_local (submitit's local executor)")
    s = SlurmOptions()
    p.add_argument("--slurm_partition", default=s.partition, help="SLURM partition (default: the cluster's)")
    p.add_argument("--slurm_account", default=s.account, help="SLURM account (default: the user's)")
    p.add_argument("--slurm_time", type=int, default=s.time_min, help="minutes per run's job")
    p.add_argument("--slurm_gpus", type=int, default=s.gpus_per_run, help="GPUs per run's job")
    p.add_argument("--slurm_cpus", type=int, default=s.cpus_per_run, help="CPU cores per run's job")
    p.add_argument("--slurm_mem_gb", type=int, default=s.mem_gb, help="memory per run's job, GB (0: default)")


def run_ladder_cmd(args: argparse.Namespace) -> None:
    from looplab.ladder import run_ladder
    from looplab.ladder.lanes import SlurmOptions

    slurm = SlurmOptions(partition=args.slurm_partition, account=args.slurm_account, time_min=args.slurm_time,
                         gpus_per_run=args.slurm_gpus, cpus_per_run=args.slurm_cpus, mem_gb=args.slurm_mem_gb)
    path = run_ladder(args.preset, variants=split_names(args.variants) or None, seeds=args.seeds,
                      match=args.match, out=args.out, jobs=args.jobs, launcher=args.launcher, slurm=slurm)
    print(f"report: {path}")


# --- export ---------------------------------------------------------------------------------------
def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt checkpoint or a safetensors export directory")
    p.add_argument("--to", required=True, choices=("hf", "safetensors"),
                   help="hf: a transformers Llama model (baseline only); safetensors: any variant, no pickle")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--overwrite", action="store_true", help="write into an OUT_DIR that already holds files")
    p.add_argument("--strict", action="store_true", help="with --to hf, fail for a variant transformers lacks "
                   "instead of writing the safetensors format")


def run_export(args: argparse.Namespace) -> None:
    from looplab.interop import export_checkpoint

    written, files = export_checkpoint(args.checkpoint, args.to, args.out_dir, overwrite=args.overwrite,
                                       strict=args.strict)
    if written != args.to:
        print(f"note: this variant has no transformers equivalent; wrote the looplab safetensors format instead "
              f"(load it with looplab.interop.load_exported('{args.out_dir}'))")
    print(f"wrote {', '.join(files)} to {args.out_dir}")


# --- probe ----------------------------------------------------------------------------------------
def add_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="an rlf checkpoint written by train.py --variant rlf")
    p.add_argument("--out", required=True, help="where probe.json and the PNGs go")
    p.add_argument("--samples", type=int, default=200, help="evaluation chains per hop count")
    p.add_argument("--seed", type=int, default=0, help="evaluation-set and noise seed")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")


def run_probe(args: argparse.Namespace) -> dict[str, Any]:
    from looplab.eval.probe import probe
    from looplab.train.runtime import set_threads

    set_threads(args.threads)
    r = probe(args.checkpoint, args.out, samples=args.samples, seed=args.seed, device=args.device)
    hops = " ".join(f"{h}:{v['acc']:.2f}" for h, v in r["accuracy"].items())
    print(f"accuracy by hops {hops}; iid {r['iid_acc']:.3f}, ood {r['ood_acc']:.3f}")
    print(f"wrote {args.out}/probe.json and plots")
    return r


# --- sizes and demo -------------------------------------------------------------------------------
def run_sizes(args: argparse.Namespace) -> None:
    from looplab.data.tokenizer import load_tokenizer
    from looplab.models.sizes import size_table

    tok = load_tokenizer(args.tokenizer, allow_network=args.allow_network)
    print(size_table(args.variant, tok))


def run_demo(args: argparse.Namespace) -> None:
    from looplab.demo import demo

    demo(args.out)


def _commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., Any]]]:
    def sizes_args(p: argparse.ArgumentParser) -> None:
        from looplab.models import MODELS

        p.add_argument("--tokenizer", default=None)
        p.add_argument("--allow_network", action="store_true")
        p.add_argument("--variant", default="baseline", choices=list(MODELS))

    def demo_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default="runs/demo")

    return {
        "train": ("train a model (same flags as train.py)", add_train_args, run_train),
        "eval": ("evaluate a checkpoint (same flags as eval_hub.py)", add_eval_args, run_eval),
        "report": ("compare runs: ladder table, verdicts and plots", add_report_args, run_report),
        "ladder": ("train, evaluate and report every variant on one data stream", add_ladder_args, run_ladder_cmd),
        "export": ("export a checkpoint for transformers (--to hf) or as safetensors + JSON", add_export_args,
                   run_export),
        "probe": ("probe an rlf checkpoint: hop accuracy, halting, hidden states, gate, lifeline ablations",
                  add_probe_args, run_probe),
        "sizes": ("print the size presets with real parameter counts", sizes_args, run_sizes),
        "demo": ("the embedded default job on the CPU: the smoke ladder", demo_args, run_demo),
    }


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
    return 0


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
