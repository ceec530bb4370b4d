"""`looplab ladder`: train every registered variant on one stream, evaluate, and report.

For each seed every variant gets the same data stream (the trainer seeds it from the seed), the
same tokenizer (bytes) and the same token budget; only the variant and, under `--match params` or
`--match flops`, its width differ (looplab.ladder.match). Each run is the command line the seed
README ran by hand (`train.py ...`, then `eval_hub.py --suite all [--n_loops ...]`), recorded in
its directory as `ladder_run.json`.

Restartable: a run with summary.json and eval_results/results_all.json is skipped; one with
last_model.pt but no summary.json resumes from it (`--resume`); one with only summary.json is just
evaluated. A failing run is recorded with its one-line error (traceback in its `ladder.log`) and
shown as failed in the report, and the rest carry on. Layout of `--out`:
`runs/<variant>_s<seed>/` (one training run each), `report/REPORT.md` with its plots, `ladder.json`.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from looplab.errors import LooplabError
from looplab.ladder.board import Board
from looplab.ladder.match import MATCH_MODES, Shape, check_mode, match_shape, measure
from looplab.ladder.presets import INPUTS, LadderPreset, get_preset

VOCAB = 260  # the byte tokenizer every ladder run uses
RECORD = "ladder_run.json"
LOG = "ladder.log"


@dataclass
class Run:
    variant: str
    seed: int
    dir: Path
    argv: list[str]  # the training flags (train.py's)
    shape: Shape
    weight: float  # estimated cost (FLOPs per token x tokens) for the ETA

    @property
    def label(self) -> str:
        return f"{self.variant} s{self.seed}"


def select_variants(names: Sequence[str] | None) -> list[str]:
    """The asked-for variants (default: every generic one), each after the variants it takes inputs from."""
    from looplab.models import MODELS

    asked = list(names or [n for n, spec in MODELS.items() if spec.generic])  # rlf only when asked for
    for name in asked:
        if name not in MODELS:
            raise LooplabError(f"unknown variant '{name}'; allowed: {', '.join(MODELS)}")
    ordered: list[str] = []

    def add(name: str) -> None:
        for source in INPUTS.get(name, {}).values():
            if source not in ordered:
                add(source)
        if name not in ordered:
            ordered.append(name)

    for name in asked:
        add(name)
    return ordered


def train_argv(p: LadderPreset, variant: str, seed: int, run_dir: Path, shape: Shape, runs: Path) -> list[str]:
    argv = ["--variant", variant, "--model_size", p.size, "--alg_tokens", str(p.alg_tokens),
            "--total_tokens", str(p.total_tokens), "--seq_len", str(p.seq_len), "--batch_size", str(p.batch_size),
            "--lr", str(p.lr), "--warmup_tokens", str(p.warmup_tokens), "--eval_every_tokens",
            str(p.eval_every_tokens), "--eval_samples", str(p.train_eval_samples), "--seed", str(seed),
            "--device", p.device, "--threads", str(p.threads), "--output_dir", str(run_dir), "--no_progress"]
    argv += ["--alg_tasks", *p.alg_tasks] if p.alg_tasks else []
    argv += ["--lang_data", p.lang_data] if p.lang_data else []
    argv += ["--max_minutes", str(p.max_minutes)] if p.max_minutes else []
    for key, value in {**p.options.get(variant, {}), **shape.overrides}.items():
        argv += ["--model_opt", f"{key}={value}"]
    for flag, source in INPUTS.get(variant, {}).items():
        argv += [flag, str(runs / f"{source}_s{seed}" / "best_model.pt")]
    return argv


def eval_settings(p: LadderPreset, variant: str) -> dict[str, Any]:
    from looplab.models import MODELS

    return {"suite": "all", "samples": p.eval_samples, "n_loops": list(p.n_loops) if MODELS[variant].looped else [],
            "needle_lengths": list(p.needle_lengths), "needle_depths": list(p.needle_depths),
            "needle_trials": p.needle_trials, "ppl_tokens": p.ppl_tokens}


def plan(p: LadderPreset, variants: Sequence[str] | None, seeds: int, match: str, out: Path) -> list[Run]:
    check_mode(match)
    if seeds < 1:
        raise LooplabError(f"--seeds must be >= 1, got {seeds}")
    if p.lang_data and not p.lang_data.startswith("hf:") and not Path(p.lang_data).exists():
        raise LooplabError(f"preset {p.name}: language data {p.lang_data} does not exist")
    base_opts = p.options.get("baseline", {})
    runs: list[Run] = []
    for variant in select_variants(variants):
        options = p.options.get(variant, {})
        shape = Shape(note="built from its input checkpoint") if variant in INPUTS else match_shape(
            variant, match, size=p.size, vocab_size=VOCAB, seq_len=p.seq_len, options=options,
            base_options=base_opts)
        flops = measure(variant, p.size, VOCAB, p.seq_len, "flops_per_token", options, **shape.overrides)
        for seed in range(seeds):
            run_dir = out / "runs" / f"{variant}_s{seed}"
            argv = train_argv(p, variant, seed, run_dir, shape, out / "runs")
            runs.append(Run(variant, seed, run_dir, argv, shape, (flops or 0.0) * p.total_tokens))
    known = [r.weight for r in runs if r.weight]
    for r in runs:  # a variant the meta device cannot build counts as an average one
        r.weight = r.weight or (sum(known) / len(known) if known else 1.0)
    for r in runs:
        check_record(r, p)
    return runs


def settings(run: Run, p: LadderPreset) -> dict[str, Any]:
    """What must not change between two invocations on one run directory (paths made relative)."""
    runs_dir = str(run.dir.parent)
    return {"train": [a.replace(runs_dir, "<runs>") for a in run.argv], "eval": eval_settings(p, run.variant)}


def check_record(run: Run, p: LadderPreset) -> None:
    """Refuse to continue a run directory made with other settings (a changed preset or --match)."""
    path = run.dir / RECORD
    if path.exists() and json.loads(path.read_text()).get("settings") != settings(run, p):
        raise LooplabError(f"{run.dir} holds a run made with other settings; use another --out or remove it")


def stage(run_dir: Path) -> str:
    """finished / trained (summary, no evaluation) / partial (resumable) / started / new."""
    if (run_dir / "summary.json").exists():
        return "finished" if (run_dir / "eval_results" / "results_all.json").exists() else "trained"
    if (run_dir / "last_model.pt").exists():
        return "partial"
    return "started" if (run_dir / "config.json").exists() else "new"


def one_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return text if isinstance(e, LooplabError) else f"{type(e).__name__}: {text}"


def train_run(argv: list[str], log: TextIO) -> None:
    """Train through train.py's own parser and handler, its output going to the run's log."""
    from looplab.cli import Parser, add_train_args, run_train

    parser = Parser(prog="looplab ladder (train)")
    add_train_args(parser)
    with redirect_stdout(log), redirect_stderr(log):
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise LooplabError(f"train.py refused the flags {' '.join(argv)}") from None
        run_train(args)


def eval_run(run: Run, p: LadderPreset, log: TextIO) -> None:
    from looplab.config import EvalConfig
    from looplab.eval.hub import evaluate_checkpoint

    s = eval_settings(p, run.variant)
    cfg = EvalConfig(suite="all", samples=s["samples"], n_loops=tuple(s["n_loops"]),
                     needle_lengths=p.needle_lengths, needle_depths=p.needle_depths,
                     needle_trials=p.needle_trials, ppl_tokens=p.ppl_tokens)
    with redirect_stdout(log), redirect_stderr(log):
        evaluate_checkpoint(str(run.dir / "best_model.pt"), cfg, out_dir=str(run.dir / "eval_results"),
                            device=p.device, threads=p.threads)


def execute(run: Run, p: LadderPreset, board: Board) -> dict[str, Any]:
    """Bring one run to finished; returns its record (state, seconds, error)."""
    path = run.dir / RECORD
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update(argv=run.argv, settings=settings(run, p), shape=asdict(run.shape))
    at = stage(run.dir)
    if at == "finished":
        board.set(run.label, "skipped", "finished earlier")
        return {**record, "state": "skipped"}
    run.dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    t0 = time.perf_counter()
    with (run.dir / LOG).open("a") as log:
        try:
            if at != "trained":
                for flag, source in INPUTS.get(run.variant, {}).items():
                    ckpt = Path(run.argv[run.argv.index(flag) + 1])
                    if not ckpt.exists():
                        raise LooplabError(f"{flag} needs {source}'s checkpoint {ckpt}, which is missing")
                board.set(run.label, "training", "resuming" if at == "partial" else "")
                extra = {"partial": ["--resume"], "started": ["--overwrite"]}.get(at, [])
                train_run(run.argv + extra, log)
            t1 = time.perf_counter()
            record["train_seconds"] = record.get("train_seconds", 0.0) + t1 - t0
            board.set(run.label, "evaluating")
            eval_run(run, p, log)
            record.update(state="done", eval_seconds=time.perf_counter() - t1, error="")
            board.set(run.label, "done")
        except Exception as e:  # one run's failure is recorded; the ladder goes on
            log.write(traceback.format_exc())
            record.update(state="failed", error=one_line(e))
            board.set(run.label, "failed", record["error"])
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_ladder(preset: str | LadderPreset, *, variants: Sequence[str] | None = None, seeds: int = 1,
               match: str = "config", out: str | None = None, stream: TextIO | None = None,
               after_run: Callable[[Run, dict[str, Any]], None] | None = None) -> Path:
    """Train, evaluate and report the ladder; returns the path of REPORT.md. `after_run` is called
    after every run (tests use it to stop a ladder midway)."""
    from looplab.ladder.summary import write_ladder_report

    p = get_preset(preset) if isinstance(preset, str) else preset
    root = Path(out or f"runs/ladder_{p.name}")
    runs = plan(p, variants, seeds, match, root)
    board = Board({r.label: r.weight for r in runs}, stream=stream)
    records = {}
    for run in runs:
        records[run.label] = execute(run, p, board)
        if after_run is not None:
            after_run(run, records[run.label])
    return write_ladder_report(p, runs, records, match, root)


__all__ = ["MATCH_MODES", "Run", "plan", "run_ladder", "select_variants", "stage"]
