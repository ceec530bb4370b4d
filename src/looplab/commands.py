"""The `looplab` subcommands beyond train and eval: report, ladder, export, probe, sizes and demo.

Each is a pair: a function adding its flags and a handler taking the parsed namespace (cli.py runs
them, turning a LooplabError into one line and exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from looplab.flags import add_flags, read_flags, split_names


# --- report ---------------------------------------------------------------------------------------
def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="training output directories (several seeds each)")
    p.add_argument("--out", default="report", help="where REPORT.md and the plots go")
    p.add_argument("--match", default="flops", help="the figure a verdict needs within 10%% of the baseline's: "
                   "flops (default), params, or config (judged on FLOPs)")
    p.add_argument("--reference", default="baseline", help="the arm verdicts and ratios are taken against "
                   "(default baseline; the halting ladder's is latent, fixed K beside adaptive K)")


def run_report(args: argparse.Namespace) -> None:
    from looplab.eval.report import write_report

    path = write_report(args.run_dirs, args.out, match=args.match, reference=args.reference)
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
    p.add_argument("--match", default=None, help="flops (training FLOPs per token matched to the baseline's), "
                   "params, or config (same size preset; verdicts withheld where FLOPs differ); default: the "
                   "preset's (flops, except the reproductions, which build the papers' shapes)")
    p.add_argument("--jobs", type=int, default=None, help="runs at once: local lanes sharing the CPU threads, or "
                   "cluster jobs in flight (default: the preset's)")
    p.add_argument("--out", default=None, help="ladder directory (default runs/ladder_<preset>); reruns resume")
    p.add_argument("--launcher", default="local", choices=LAUNCHERS, help="local (this machine), slurm (one "
                   "submitit job per run; needs looplab[slurm]), submitit_local (submitit's local executor)")
    add_flags(p, SlurmOptions)


def run_ladder_cmd(args: argparse.Namespace) -> None:
    from looplab.ladder import run_ladder
    from looplab.ladder.lanes import SlurmOptions
    from looplab.ladder.stop import stop_signals

    slurm = SlurmOptions(**read_flags(SlurmOptions, args))
    with stop_signals():  # a stop while the ladder is planned is one line too
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
    from looplab.runtime import set_threads

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


def add_sizes_args(p: argparse.ArgumentParser) -> None:
    from looplab.models import MODELS

    p.add_argument("--tokenizer", default=None)
    p.add_argument("--allow_network", action="store_true")
    p.add_argument("--variant", default="baseline", choices=list(MODELS))


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo")


# name -> (help, add its flags, handler)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., Any]]] = {
    "report": ("compare runs: ladder table, verdicts and plots", add_report_args, run_report),
    "ladder": ("train, evaluate and report every variant on one data stream", add_ladder_args, run_ladder_cmd),
    "export": ("export a checkpoint for transformers (--to hf) or as safetensors + JSON", add_export_args,
               run_export),
    "probe": ("probe an rlf checkpoint: hop accuracy, halting, hidden states, gate, lifeline ablations",
              add_probe_args, run_probe),
    "sizes": ("print the size presets with real parameter counts", add_sizes_args, run_sizes),
    "demo": ("the embedded default job on the CPU: the smoke ladder", add_demo_args, run_demo),
}
