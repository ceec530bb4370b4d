"""`looplab ladder`: train every registered variant on one stream, evaluate, and report.

For each seed every variant gets the same data stream (the trainer seeds it from the seed), the
same tokenizer (bytes) and the same token budget; only the variant, its width (matched to the
baseline's training FLOPs per token by default, looplab.ladder.match) and its learning rate differ.

Learning rate: with a preset `lr_grid`, each variant first trains seeds 0..sweep_seeds-1 for
`sweep_tokens` at every value of the grid (`sweep/<variant>_lr<lr>_s<seed>/`); the value with the
highest mean IID answer accuracy wins, the validation loss breaking ties, and a winner at an edge of
the values tried adds one more value beyond it (up to `sweep_steps`; looplab.ladder.sweep). Once no
value is left to try, every seed of the variant trains at the winner. The same procedure for every
variant; the sweep (table and plot) is part of the report.

Competence: with a preset `competence`, a run stops at the first periodic evaluation where every
IID (task, length) cell reaches that answer accuracy, under `wsd` after the decay this starts (the
report records whether and when); a run the time cap stopped is kept out of the comparisons.

Each run is a LaunchConfig and a TrainConfig built from the preset (a partial config) plus what
differs per run, trained through `train.launch.launch` and scored through the evaluation hub, as
the seed README did by hand with `train.py ...` and `eval_hub.py ...`; the flags it corresponds to
are recorded in its directory's `ladder_run.json`. `--jobs N` runs N at once (lanes.py).

Test sets: before anything is scored the ladder writes one fixed test set per (task, length) to
`testsets/` (looplab.data.testsets, with DIGESTS.json), every run is scored on those files, and the
report is refused when the results of two runs name different test sets (each run's digest is in
`ladder.json`).

Restartable: a run with summary.json and its evaluation is skipped; one with last_model.pt but no
summary.json resumes from it (`--resume`); one with only summary.json is just evaluated. A failing
run is recorded with its one-line error (traceback in its `ladder.log`) and shown as failed in the
report, and the rest carry on. SIGTERM or SIGHUP stops the ladder: its runs in flight are stopped
(each records that it was interrupted), the lock is released, and one line says what to rerun. Each
run directory is locked by the process working on it (lock.py). Layout of `--out`: `sweep/`,
`runs/<variant>_s<seed>/`, `report/REPORT.md` with its plots (`sweep.png` among them), `ladder.json`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from looplab.config import EvalConfig, LaunchConfig
from looplab.data import testsets
from looplab.data.tasks import get_tasks, in_format, training_tasks
from looplab.errors import LooplabError, Stopped
from looplab.flags import to_argv
from looplab.io import write_json
from looplab.ladder.board import Board
from looplab.ladder.lanes import LAUNCHERS, JobLanes, Lanes, SlurmOptions
from looplab.ladder.lock import check_free, ladder_lock, run_lock
from looplab.ladder.match import MATCH_MODES, Shape, check_mode, match_shape, measure
from looplab.ladder.presets import INPUTS, LadderPreset, get_preset
from looplab.ladder.runs import LOG, RECORD, Run, checkpoint_step, stage
from looplab.ladder.stop import stop_signals
from looplab.ladder.summary import write_ladder_report
from looplab.ladder.sweep import Score, choose, extension, outcome, score
from looplab.ladder.wall import WallClock

VOCAB = 260  # the byte tokenizer every ladder run uses
TESTSETS = "testsets"  # the ladder's test sets, beside runs/
COMPILE_CACHE = "compile_cache"  # torch.compile's cache (TORCHINDUCTOR_CACHE_DIR) of a ladder whose runs compile
FREE_FLAGS = ("--threads",)  # flags that may differ between invocations (lanes share the cores)


def select_variants(names: Sequence[str] | None, arms: Sequence[str] = ()) -> list[str]:
    """The asked-for variants or preset arms (default: every generic variant), each after the variants
    it takes inputs from."""
    from looplab.models import MODELS

    asked = list(names or [n for n, spec in MODELS.items() if spec.generic])  # rlf only when asked for
    for name in asked:
        if name not in MODELS and name not in arms:
            raise LooplabError(f"unknown variant '{name}'; allowed: {', '.join([*MODELS, *arms])}")
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


def threads_per_run(p: LadderPreset, jobs: int) -> int:
    """The preset's thread count, else this machine's cores shared among the lanes."""
    return p.threads or max(1, (os.cpu_count() or 1) // jobs)


@dataclass
class Plan:
    """What the ladder will run: each variant's shape, its sweep runs, and (once its learning rate is
    known) its seeds' runs."""

    preset: LadderPreset
    root: Path
    seeds: int
    threads: int
    shapes: dict[str, Shape]
    flops: dict[str, float]

    def weight(self, variant: str, tokens: int) -> float:
        return (self.flops.get(variant) or (sum(self.flops.values()) / max(1, len(self.flops)))) * tokens

    def sweep_runs(self, variant: str) -> list[Run]:
        """The sweep's runs over the preset grid (its extensions come from `sweep_point` once they finish)."""
        if not self.preset.lr_grid or variant in INPUTS:  # one built on another's checkpoint keeps the preset lr
            return []
        return [r for lr in self.preset.lr_grid for r in self.sweep_point(variant, lr)]

    def sweep_point(self, variant: str, lr: float) -> list[Run]:
        p = self.preset
        return [make_run(self, variant, seed, self.root / "sweep" / f"{variant}_lr{lr:g}_s{seed}", lr=lr,
                         tokens=p.sweep_tokens) for seed in range(p.sweep_seeds)]

    def seed_runs(self, variant: str, lr: float) -> list[Run]:
        return [make_run(self, variant, seed, self.root / "runs" / f"{variant}_s{seed}", lr=lr)
                for seed in range(self.seeds)]

    def fixed_lr(self, variant: str) -> float:
        lrs = self.preset.lrs
        return lrs.get(variant, lrs.get(self.preset.variant_of(variant), self.preset.base.lr))


def make_run(pl: Plan, variant: str, seed: int, run_dir: Path, *, lr: float, tokens: int | None = None) -> Run:
    """One run's configs; `tokens` makes it a sweep run (that budget, no competence stop)."""
    p = pl.preset
    per_run: dict[str, Any] = dict(output_dir=str(run_dir), seed=seed, lr=lr, threads=pl.threads, progress=False)
    if variant != p.variant_of(variant):  # an arm: its name in the run's config (a variant's is its own)
        per_run["arm"] = variant
    if tokens:
        per_run.update(alg_tokens=tokens, total_tokens=tokens, eval_every_tokens=tokens, competence=0.0)
    train = p.train_config(**per_run)
    inputs = {field: str(pl.root / "runs" / f"{source}_s{seed}" / "best_model.pt")
              for field, source in INPUTS.get(variant, {}).items()}
    launch = LaunchConfig(variant=p.variant_of(variant), model_size=p.size,
                          options={**p.options_of(variant), **pl.shapes[variant].overrides}, **inputs)
    return Run(variant, seed, run_dir, launch, train, pl.shapes[variant], pl.weight(variant, train.total_tokens),
               sweep=bool(tokens))


def check_packing(p: LadderPreset, names: Sequence[str]) -> str:
    """The one packing every run of the ladder trains with; a ladder whose runs would train on different
    rows (`--packing auto` resolves per variant) is refused before anything is built or written."""
    from looplab.train.launch import packing_for

    by: dict[str, list[str]] = {}
    for name in names:
        try:
            packing = packing_for(p.variant_of(name), p.base.packing)
        except LooplabError as e:
            raise LooplabError(f"preset {p.name}, {name}: {e}") from None
        if packing is not None:  # a variant with its own stream (rlf) has no packing to share
            by.setdefault(packing, []).append(name)
    if len(by) > 1:
        raise LooplabError(f"preset {p.name}: packing {p.base.packing} would train "
                           + "; ".join(f"{', '.join(n)} on {k} rows" for k, n in by.items())
                           + "; set one packing in the preset's train settings (single works for every variant)")
    return next(iter(by), p.base.packing)


def make_plan(p: LadderPreset, variants: Sequence[str] | None, seeds: int, match: str, out: Path,
              threads: int = 1) -> tuple[Plan, list[str]]:
    check_mode(match)
    if seeds < 1:
        raise LooplabError(f"--seeds must be >= 1, got {seeds}")
    lang = p.base.lang_data
    if lang and not lang.startswith("hf:") and not Path(lang).exists():
        raise LooplabError(f"preset {p.name}: language data {lang} does not exist")
    names = select_variants(variants or p.variants or None, tuple(p.arms))
    check_packing(p, names)
    base_opts = p.options.get("baseline", {})
    shapes, flops = {}, {}
    for variant in names:
        built, options = p.variant_of(variant), p.options_of(variant)
        shapes[variant] = Shape(note="built from its input checkpoint") if variant in INPUTS else match_shape(
            built, match, size=p.size, vocab_size=VOCAB, seq_len=p.base.seq_len, options=options,
            base_options=base_opts, train=p.base)
        value = measure(built, p.size, VOCAB, p.base.seq_len, "flops_per_token", options, shapes[variant].loops,
                        **shapes[variant].overrides)
        if value:
            flops[variant] = value
    return Plan(p, out, seeds, threads, shapes, flops), names


def plan(p: LadderPreset, variants: Sequence[str] | None, seeds: int, match: str, out: Path) -> list[Run]:
    """Every run at the preset's fixed learning rates (sweeps first): what a ladder without a sweep runs."""
    pl, names = make_plan(p, variants, seeds, match, out, threads_per_run(p, 1))
    return [r for v in names for r in (*pl.sweep_runs(v), *pl.seed_runs(v, pl.fixed_lr(v)))]


def settings(run: Run, p: LadderPreset) -> dict[str, Any]:
    """What must not change between two invocations on one run directory (paths made relative)."""
    runs_dir = str(run.dir.parent)
    argv = [a.replace(runs_dir, "<runs>").replace(str(run.dir.parent.parent / "runs"), "<runs>") for a in run.argv]
    for flag in FREE_FLAGS:
        if flag in argv:
            i = argv.index(flag)
            argv = argv[:i] + argv[i + 2:]
    root = str(run.dir.parent.parent)
    return {"train": argv, "eval": None if run.sweep else [a.replace(root, "<ladder>") for a in
                                                          to_argv(eval_config(run, p))]}


def check_record(run: Run, p: LadderPreset) -> None:
    """Refuse to continue a run directory made with other settings (a changed preset or --match)."""
    path = run.dir / RECORD
    if path.exists() and json.loads(path.read_text()).get("settings") != settings(run, p):
        raise LooplabError(f"{run.dir} holds a run made with other settings; use another --out or remove it")


def one_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return text if isinstance(e, LooplabError) else f"{type(e).__name__}: {text}"


def eval_config(run: Run, p: LadderPreset) -> EvalConfig:
    from looplab.models import MODELS

    cfg = p.eval_config(MODELS[run.launch.variant].looped)
    return replace(cfg, test_sets=str(run.dir.parent.parent / TESTSETS)) if scores_test_sets(p) else cfg


def scores_test_sets(p: LadderPreset) -> bool:
    return p.suite in ("algorithmic", "all")


def write_test_sets(p: LadderPreset, root: Path) -> None:
    """The test sets every run of the ladder is scored on: the evaluated tasks' cells, written once."""
    if not scores_test_sets(p):
        return
    cfg = p.eval_config(False)
    tasks = get_tasks(in_format(cfg.tasks, cfg.answer_format)) if cfg.tasks else training_tasks(
        p.base.alg_tasks, p.base.answer_format)
    testsets.write_test_sets(root / TESTSETS, tasks, samples=cfg.samples, ood_samples=cfg.ood_count)


def scored_digests(p: LadderPreset, runs: Sequence[Run]) -> dict[str, str]:
    """Each scored run's test set digest, read from its results file."""
    out = {}
    for run in runs:
        path = run.dir / "eval_results" / f"results_{p.suite}.json"
        digest = json.loads(path.read_text())["metadata"].get("test_set", {}).get("digest") if path.exists() else None
        if digest:
            out[run.label] = digest
    return out


def train_run(run: Run, at: str, log: TextIO) -> None:
    """Train (resuming a partial run, replacing a started one), the output going to the run's log."""
    from looplab.train.launch import launch

    with redirect_stdout(log), redirect_stderr(log):
        launch(replace(run.launch, resume=at == "partial", overwrite=at == "started"), run.train)


def eval_run(run: Run, p: LadderPreset, log: TextIO) -> None:
    from looplab.eval.hub import evaluate_checkpoint

    with redirect_stdout(log), redirect_stderr(log):
        evaluate_checkpoint(str(run.dir / "best_model.pt"), eval_config(run, p), out_dir=str(run.dir / "eval_results"),
                            device=run.train.device, threads=run.train.threads)


def execute(run: Run, p: LadderPreset, board: Any) -> dict[str, Any]:
    """Bring one run to finished, holding its directory's lock (held by a live process: a one-line
    error); returns its record (state, seconds, error). Runs in a worker process under --jobs, so it
    reads and writes only the run's own directory."""
    with run_lock(run.dir):
        return advance(run, p, board)


def advance(run: Run, p: LadderPreset, board: Any) -> dict[str, Any]:
    path = run.dir / RECORD
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update(argv=run.flags, settings=settings(run, p), shape=asdict(run.shape), lr=run.lr)
    at = stage(run.dir, None if run.sweep else p.suite)
    if at == "finished":  # its record stays what the run that finished it wrote
        board.set(run.label, "skipped", "finished earlier")
        return record
    run.dir.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    t0 = time.perf_counter()
    with (run.dir / LOG).open("a") as log:
        try:
            if at != "trained":
                for name, source in INPUTS.get(run.variant, {}).items():
                    ckpt = Path(getattr(run.launch, name))
                    if not ckpt.exists():
                        raise LooplabError(f"--{name} needs {source}'s checkpoint {ckpt}, which is missing")
                board.set(run.label, "training", "resuming" if at == "partial" else "")
                record.setdefault("attempts", []).append({"stage": at, "from_step": checkpoint_step(run.dir)})
                write_json(path, record)
                train_run(run, at, log)
            t1 = time.perf_counter()
            record["train_seconds"] = record.get("train_seconds", 0.0) + t1 - t0
            if not run.sweep:
                board.set(run.label, "evaluating")
                eval_run(run, p, log)
            record.update(state="done", eval_seconds=time.perf_counter() - t1, error="")
            board.set(run.label, "done")
        except Exception as e:  # one run's failure is recorded; the ladder goes on
            log.write(traceback.format_exc())
            record.update(state="failed", error=one_line(e))
            board.set(run.label, "failed", record["error"])
        except (Stopped, KeyboardInterrupt) as e:  # stopped from outside: recorded, and the stop goes on
            if stage(run.dir, None if run.sweep else p.suite) == "finished":  # stopped after its last output
                record.update(state="done", error="")
            else:
                record.update(state="interrupted", error=f"{str(e) or 'interrupted'}; resumes from step "
                                                         f"{checkpoint_step(run.dir)}")
            log.write(f"{str(e) or 'interrupted'}\n")
            write_json(path, record)
            raise
    write_json(path, record)
    return record


def sweep_points(sweep: Sequence[Run]) -> dict[float, list[Score]]:
    """Each rate of a variant's sweep runs -> its seeds' scores (seed order)."""
    points: dict[float, list[Score]] = {}
    for run in sorted(sweep, key=lambda r: (r.lr, r.seed)):
        points.setdefault(run.lr, []).append(score(run.dir))
    return points


def choose_lr(sweep: Sequence[Run]) -> float:
    """The learning rate a variant's finished sweep runs choose (looplab.ladder.sweep.choose)."""
    return choose(sweep_points(sweep), sweep[0].variant)


def run_ladder(preset: str | LadderPreset, *, variants: Sequence[str] | None = None, seeds: int | None = None,
               match: str | None = None, out: str | None = None, jobs: int | None = None, launcher: str = "local",
               slurm: SlurmOptions | None = None, stream: TextIO | None = None,
               after_run: Callable[[Run, dict[str, Any]], None] | None = None) -> Path:
    """Sweep (when the preset has a grid), train, evaluate and report the ladder, holding the
    directory's lock; returns the path of REPORT.md. `launcher` runs each run here (`local`, `jobs`
    lanes) or as a submitit job (`slurm`, `submitit_local`). `after_run` is called after every run
    (tests use it to stop a ladder midway)."""
    if launcher not in LAUNCHERS:
        raise LooplabError(f"unknown --launcher '{launcher}'; allowed: {', '.join(LAUNCHERS)}")
    p = get_preset(preset) if isinstance(preset, str) else preset
    match = match or p.match
    jobs = p.jobs if jobs is None else jobs
    if jobs < 1:
        raise LooplabError(f"--jobs must be >= 1, got {jobs}")
    slurm = slurm or SlurmOptions()
    threads = threads_per_run(p, jobs) if launcher == "local" else (p.threads or slurm.cpus_per_run)
    root = Path(out or f"runs/ladder_{p.name}")
    pl, names = make_plan(p, variants, p.seeds if seeds is None else seeds, match, root, threads)
    with stop_signals(), ladder_lock(root) as stale:  # a lock naming this ladder: signals are handled
        if stale:
            (stream or sys.stderr).write(f"cleared a stale lock of a ladder that did not finish: {stale}\n")
        if p.base.compile:  # the runs of one ladder share their compiled graphs: a variant compiles once
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str((root / COMPILE_CACHE).resolve())
        check_free(r.dir for v in names for r in (*pl.sweep_runs(v), *pl.seed_runs(v, pl.fixed_lr(v))))
        board = Board({r.label: r.weight for v in names for r in (*pl.sweep_runs(v), *pl.seed_runs(v, pl.fixed_lr(v)))},
                      stream=stream)
        lanes = Lanes(jobs, board) if launcher == "local" else JobLanes(launcher, root / "submitit", jobs, board,
                                                                         slurm)
        try:
            with WallClock(root) as clock:
                return _run(p, pl, names, match, root, lanes, board, after_run, clock)
        except BaseException as e:  # a stop signal, Ctrl-C, an error: no run goes on without the ladder
            stopped = lanes.stop()
            if isinstance(e, Stopped):
                raise Stopped(e.signum, stop_line(e, stopped, p.suite)) from None
            raise
        finally:
            lanes.close()


def stop_line(e: Stopped, runs: Sequence[Run], suite: str) -> str:
    """What a stopped ladder prints: the runs it interrupted, where each resumes, and what to do."""
    def state_of(r: Run) -> str:
        at = stage(r.dir, None if r.sweep else suite)
        return {"finished": "finished", "trained": "trained; its scoring reruns"}.get(
            at, f"resumes from step {checkpoint_step(r.dir)}")

    where = ", ".join(f"{r.label} ({state_of(r)})" for r in runs)
    return (f"{e}: {'interrupted ' + where if where else 'no run was in flight'}; the directory is unlocked, "
            f"rerun the same command to resume")


def _run(p: LadderPreset, pl: Plan, names: list[str], match: str, root: Path, lanes: Lanes | JobLanes,
         board: Board, after_run: Callable[[Run, dict[str, Any]], None] | None, clock: WallClock) -> Path:
    sweeps = {v: pl.sweep_runs(v) for v in names}
    guess = {v: pl.seed_runs(v, pl.fixed_lr(v)) for v in names}  # learning rates not known yet: board rows
    for run in [r for v in names for r in (*sweeps[v], *guess[v])]:
        if run.sweep or not sweeps[run.variant]:
            check_record(run, p)
    write_test_sets(p, root)
    records: dict[str, dict[str, Any]] = {}
    chosen: dict[str, float] = {}
    runs: dict[str, list[Run]] = {}
    todo = [r for v in names for r in sweeps[v]]
    waiting = list(names)  # variants whose seed runs are not queued yet
    done: set[str] = set()

    def swept(variant: str) -> bool:
        """Every sweep run of it is done, and no rate is left to try: else the next one is queued."""
        if not all(r.label in done for r in sweeps[variant]):
            return False
        lr = extension(p.lr_grid, sweep_points(sweeps[variant]), p.sweep_steps) if sweeps[variant] else None
        if lr is None:
            return True
        added = pl.sweep_point(variant, lr)
        for r in added:
            check_record(r, p)
            board.add(r.label, r.weight)
        sweeps[variant] += added
        todo[:0] = added  # ahead of other runs: the variant's seeds wait for them
        return False

    def ready(variant: str) -> bool:
        """Its sweep has settled, and every seed of each variant whose checkpoints it builds on is done."""
        return swept(variant) and all(
            s in runs and all(r.label in done for r in runs[s]) for s in INPUTS.get(variant, {}).values())

    while todo or waiting or lanes.running:
        unblocked = [v for v in waiting if ready(v)]
        if not (unblocked or todo or lanes.running):  # nothing in flight can unblock them
            raise LooplabError(f"cannot schedule {', '.join(waiting)}: an input variant is not in this ladder")
        for variant in unblocked:
            waiting.remove(variant)
            try:
                chosen[variant] = choose_lr(sweeps[variant]) if sweeps[variant] else pl.fixed_lr(variant)
            except LooplabError as e:  # no usable sweep run: its seeds fail with that reason
                runs[variant] = guess[variant]
                for r in runs[variant]:
                    records[r.label] = {"state": "failed", "error": str(e), "lr": None}
                    done.add(r.label)
                    board.set(r.label, "failed", str(e))
                continue
            runs[variant] = pl.seed_runs(variant, chosen[variant])
            for r in runs[variant]:
                check_record(r, p)
            todo += runs[variant]
        while todo and lanes.free:
            run = todo.pop(0)
            lanes.submit(run, execute, run, p)
        collected = lanes.collect()
        for run, record in collected:
            records[run.label] = record
            done.add(run.label)
            if after_run is not None:
                after_run(run, record)
        if collected:
            clock.tick(len(collected))
    sweep = {v: outcome(p.lr_grid, sweep_points(sweeps[v]), chosen.get(v)) for v in names if sweeps[v]}
    used = scored_digests(p, [r for v in names for r in runs[v]])
    for label, digest in used.items():
        records.setdefault(label, {})["test_set"] = digest
    if len(set(used.values())) > 1:
        raise LooplabError(f"the runs of {root} were scored on different test sets ("
                           + ", ".join(f"{k}: {v[:12]}" for k, v in used.items()) + "); re-evaluate them")
    clock.tick(0)
    return write_ladder_report(p, [r for v in names for r in runs[v]], records, match, root,
                               sweep=sweep, sweep_runs=[r for v in names for r in sweeps[v]])


__all__ = ["MATCH_MODES", "Run", "choose_lr", "plan", "run_ladder", "select_variants", "stage"]
