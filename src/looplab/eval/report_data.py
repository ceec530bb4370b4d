"""What a report reads: run directories, their accuracy cells with chance floors, and group figures.

A run directory is what train.py writes (`summary.json` required; `config.json`, `metrics.json` and
`eval_results/results_*.json` read when present). Runs are grouped by arm, the name the run's config
records (`train.arm`: a ladder's arm, else the variant; older runs without it: the variant); runs that
share a name but not a configuration (another variant, option or position encoding) are named by
variant plus settings instead, so `shared_loop` iso_param and iso_flop stay apart. Accuracy figures are floor-normalised means over
tasks (each task weighs the same, whatever its number of cells) with 95% intervals from the
two-level bootstrap of `looplab.eval.stats`; out-of-distribution figures use the runs that reached
competence (when the runs recorded it), so that generalisation is compared between models that
learned their tasks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from looplab.data.floors import chance_floor
from looplab.data.tasks import TASKS
from looplab.errors import LooplabError
from looplab.eval import stats
from looplab.eval.stats import Cells, Interval

BASELINE = "baseline"


@dataclass
class Run:
    path: Path
    variant: str  # the registered variant
    seed: int | None
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # suite -> results payload
    arm: str = ""  # the run's name in tables and plots (config.json's train.arm; empty: the variant)
    settings: dict[str, Any] = field(default_factory=dict)  # model options and non-default shared fields
    test_set: dict[str, Any] = field(default_factory=dict)  # what its algorithmic grid was scored on (digest, sizes)

    @property
    def name(self) -> str:
        return self.arm or self.variant

    @property
    def label(self) -> str:
        """Variant plus settings: the name when two configurations share an arm name."""
        return self.variant + ("(" + ",".join(f"{k}={v}" for k, v in sorted(self.settings.items())) + ")"
                               if self.settings else "")

    @cached_property
    def cells(self) -> dict[tuple[str, int], Cell]:
        """(task, length) -> cell of its algorithmic grid, read once."""
        return grid_cells(self)

    @cached_property
    def outcomes(self) -> dict[tuple[str, int], np.ndarray]:
        """(task, length) -> per-problem answer outcomes (N,) where its grid kept them, read once."""
        return grid_outcomes(self)

    @property
    def packing(self) -> str | None:
        """How its algorithmic rows were laid out (config.json records the resolved packing)."""
        return self.config.get("train", {}).get("packing")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LooplabError(f"cannot read {path} ({type(e).__name__})") from None


def load_results(eval_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Suite -> results from `results_all.json`, then single-suite files (which take precedence), and the
    test set the algorithmic grid was scored on (its metadata; {} for older results)."""
    out: dict[str, dict[str, Any]] = {}
    test_set: dict[str, Any] = {}
    files = sorted(eval_dir.glob("results_*.json"), key=lambda p: (p.name != "results_all.json", p.name))
    for f in files:
        doc = _read_json(f)
        res = doc.get("results", {}) if isinstance(doc, dict) else {}
        if doc.get("suite") == "all":
            out.update({k: v for k, v in res.items() if k not in ("skipped", "suite_seconds")})
        elif "suite" in doc:
            out[doc["suite"]] = res
        if doc.get("suite") in ("all", "algorithmic"):
            test_set = doc.get("metadata", {}).get("test_set") or test_set
    return out, test_set


LABEL_FIELDS = {"pos_encoding": "rope", "pos_range": 0, "position_ids": "plain", "position_offset": 0,
                "answer_at_once": False}  # shared model fields that name a group when not default


def load_run(path: str | Path) -> Run:
    p = Path(path)
    if not p.is_dir():
        raise LooplabError(f"run directory '{p}' does not exist")
    if not (p / "summary.json").exists():
        raise LooplabError(f"'{p}' has no summary.json: not a finished training run")
    summary = _read_json(p / "summary.json")
    config = _read_json(p / "config.json") if (p / "config.json").exists() else {}
    metrics = _read_json(p / "metrics.json") if (p / "metrics.json").exists() else []
    model = config.get("model", {})
    variant = summary.get("variant") or model.get("variant") or "unknown"
    opts = dict(model.get("options") or {})
    opts.update({k: model[k] for k, default in LABEL_FIELDS.items() if model.get(k, default) != default})
    seed = config.get("train", {}).get("seed")
    results, test_set = load_results(p / "eval_results") if (p / "eval_results").is_dir() else ({}, {})
    return Run(path=p, variant=variant, seed=seed, summary=summary, config=config, metrics=metrics, results=results,
               arm=config.get("train", {}).get("arm") or "", settings=opts, test_set=test_set)


def group_runs(runs: Sequence[Run], first: str = BASELINE) -> dict[str, list[Run]]:
    """Name -> runs (`first`, the reference arm, first; then by name): each run's arm, or its label where
    one arm name covers several configurations (older runs named by their variant alone)."""
    configs: dict[str, set[str]] = {}
    for r in runs:
        configs.setdefault(r.name, set()).add(r.label)
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.name if len(configs[r.name]) == 1 else r.label, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] != first, kv[0])))


def algorithmic_grid(run: Run) -> dict[str, Any] | None:
    """The hub's algorithmic results when present, else the final grid in summary.json."""
    return run.results.get("algorithmic") or run.summary.get("final_eval")


# --- cells ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    task: str
    length: int
    split: str  # iid or ood
    acc: float
    n: int
    floor: float  # chance floor of the cell (0 when unknown: a task file task scored before floors)


def cell_floor(task: str, length: int, cell: dict[str, Any]) -> float:
    if "floor" in cell:
        return float(cell["floor"])
    return chance_floor(TASKS[task], length) if task in TASKS else 0.0


def loop_samples(groups: dict[str, list[Run]]) -> list[int]:
    """The problems per cell the runs' loop sweeps and exits scored, where fewer than the main grid
    (`EvalConfig.loop_samples`; [] when every run scored them all)."""
    return sorted({(r.results.get("algorithmic") or {}).get("loop_samples") for rs in groups.values() for r in rs}
                  - {None})


def run_cells(run: Run) -> dict[tuple[str, int], Cell]:
    """(task, length) -> cell of the run's algorithmic grid."""
    return run.cells


def grid_cells(run: Run) -> dict[tuple[str, int], Cell]:
    out = {}
    for task, entry in ((algorithmic_grid(run) or {}).get("tasks") or {}).items():
        for length, c in entry.get("lengths", {}).items():
            if c.get("acc") is not None:
                out[task, int(length)] = Cell(task, int(length), c["split"], float(c["acc"]), int(c.get("n", 1)),
                                              cell_floor(task, int(length), c))
    return out


def cells_of(runs: Sequence[Run], keys: Sequence[tuple[str, int]], *, normalise: bool = True) -> Cells | None:
    """The runs' cells at `keys` as bootstrap input; every task weighs the same, shared among its cells.
    Without `normalise` the floors are 0 (raw answer accuracy)."""
    if not runs or not keys:
        return None
    per_run = [run_cells(r) for r in runs]
    acc = np.array([[cells[k].acc for k in keys] for cells in per_run])  # (S, C)
    n = np.array([[cells[k].n for k in keys] for cells in per_run])
    floor = np.array([per_run[0][k].floor if normalise else 0.0 for k in keys])
    return Cells(acc=acc, n=n, floor=floor, weight=task_weights(keys))


def task_weights(keys: Sequence[tuple[str, int]]) -> np.ndarray:
    """(C,) every task weighs the same in a figure, shared equally among its cells."""
    tasks = [k[0] for k in keys]
    return np.array([1.0 / (len(set(tasks)) * tasks.count(t)) for t in tasks])


def grid_outcomes(run: Run) -> dict[tuple[str, int], np.ndarray]:
    out = {}
    for task, entry in ((algorithmic_grid(run) or {}).get("tasks") or {}).items():
        for length, c in entry.get("lengths", {}).items():
            if c.get("outcomes"):  # "1"/"0" per problem
                out[task, int(length)] = (np.frombuffer(c["outcomes"].encode(), dtype=np.uint8) == ord("1")).astype(
                    np.float64)
    return out


def outcomes_of(runs: Sequence[Run], keys: Sequence[tuple[str, int]], *,
                normalise: bool = True) -> stats.Outcomes | None:
    """The runs' per-problem outcomes at `keys` (one (S, N) matrix per cell, weights as `cells_of`), or
    None when a run did not keep them or the runs scored different numbers of problems (older runs:
    the caller falls back to `cells_of`)."""
    if not runs or not keys:
        return None
    per_run = [r.outcomes for r in runs]
    if any(k not in o for o in per_run for k in keys):
        return None
    if any(len({len(o[k]) for o in per_run}) != 1 for k in keys):
        return None
    cells = runs[0].cells
    return stats.Outcomes(cells=tuple(np.stack([o[k] for o in per_run]) for k in keys),
                          floor=np.array([cells[k].floor if normalise else 0.0 for k in keys]),
                          weight=task_weights(keys))


def shared_keys(runs: Sequence[Run], split: str) -> list[tuple[str, int]]:
    """The (task, length) cells of `split` that every run has, in grid order."""
    per_run = [run_cells(r) for r in runs]
    if not per_run:
        return []
    keys = [k for k, c in per_run[0].items() if c.split == split]
    return [k for k in keys if all(k in cells for cells in per_run[1:])]


# --- competence ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Competence:
    threshold: float | None  # None: the run did not record a competence target
    reached: bool | None
    tokens: int | None  # training tokens at the first competent evaluation
    best_iid: float | None  # the run's best periodic in-distribution accuracy (mean over tasks)


def competence(run: Run) -> Competence:
    c = run.summary.get("competence") or {}
    best = run.summary.get("best_eval_mean_acc")
    return Competence(c.get("threshold"), c.get("reached"), c.get("tokens"), best if best is None or best >= 0 else None)


def stopped_by(run: Run) -> str:
    """Why training ended: competence, the token budget, or the time cap, as summary.json records it
    (`stopped_by`); older runs without it: guessed from a token shortfall (a competence stop aside)."""
    recorded = run.summary.get("stopped_by")
    if recorded:
        return recorded.replace("_", " ")
    c = competence(run)
    budget = run.config.get("train", {}).get("total_tokens")
    if c.reached:
        return "competence"
    if budget and run.summary.get("tokens", 0) < budget - run.config["train"].get("seq_len", 0) * \
            run.config["train"].get("batch_size", 0):
        return "time cap"
    return "token budget"


def competent(runs: Sequence[Run]) -> list[Run]:
    """The runs that reached competence; all of them when none recorded a target (older runs)."""
    if all(competence(r).reached is None for r in runs):
        return list(runs)
    return [r for r in runs if competence(r).reached]


# --- group figures -------------------------------------------------------------------------------
@dataclass
class GroupStats:
    seeds: int
    iid: Interval | None  # floor-normalised in-distribution accuracy, all runs
    iid_raw: Interval | None  # plain mean in-distribution answer accuracy, all runs
    iid_well_formed: float | None  # share of IID outputs that stop right after the answer, all runs
    ood: Interval | None  # floor-normalised out-of-distribution accuracy, competent runs only
    ood_seeds: int  # runs behind `ood`
    competent: int | None  # runs that reached competence (None: not recorded)
    tokens_to_competence: Interval | None  # over the competent runs
    params: float | None
    flops_per_token: float | None  # realised: the FLOPs the runs executed per training token
    sec_per_token: float | None
    needle2k: float | None
    ppl: float | None


def realised_flops_per_token(run: Run) -> float | None:
    """Training FLOPs per token the run executed (loops run, sampled recurrences), from summary.json;
    older runs: the nominal cost at the trained loop count."""
    return run.summary.get("realised_flops_per_token") or run.summary.get("cost", {}).get("flops_per_token")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def accuracy(runs: Sequence[Run], split: str, *, normalise: bool = True) -> Interval | None:
    """The runs' figure on `split` with its 95% interval: from per-problem outcomes (seeds and problems
    resampled jointly) where the runs kept them, else from cell accuracies (older runs)."""
    keys = shared_keys(runs, split)
    outcomes = outcomes_of(runs, keys, normalise=normalise)
    if outcomes is not None:
        return stats.outcome_interval(outcomes)
    cells = cells_of(runs, keys, normalise=normalise)
    return None if cells is None else stats.accuracy_interval(cells)


def cell_accuracy(runs: Sequence[Run], key: tuple[str, int]) -> Interval | None:
    """One cell's answer accuracy over the runs that have it, with its 95% interval (never of zero width
    when per-problem outcomes were kept)."""
    have = [r for r in runs if key in run_cells(r)]
    outcomes = outcomes_of(have, [key], normalise=False)
    if outcomes is not None:
        return stats.cell_interval(outcomes.cells[0])
    cells = cells_of(have, [key], normalise=False)
    return None if cells is None else stats.accuracy_interval(cells)


def well_formed(runs: Sequence[Run], split: str) -> float | None:
    """Mean share of outputs that stop right after an answer of the target's length, over the runs'
    cells of `split` (None where the grids did not record it)."""
    vals = [c["well_formed"] for r in runs for entry in ((algorithmic_grid(r) or {}).get("tasks") or {}).values()
            for c in entry.get("lengths", {}).values() if c.get("split") == split and "well_formed" in c]
    return float(np.mean(vals)) if vals else None


def group_stats(runs: Sequence[Run]) -> GroupStats:
    ok = competent(runs)
    recorded = [competence(r) for r in runs if competence(r).reached is not None]
    tokens = [competence(r).tokens for r in ok if competence(r).tokens is not None]
    return GroupStats(
        seeds=len(runs), iid=accuracy(runs, "iid"), iid_raw=accuracy(runs, "iid", normalise=False),
        iid_well_formed=well_formed(runs, "iid"),
        ood=accuracy(ok, "ood"), ood_seeds=len(ok),
        competent=sum(bool(c.reached) for c in recorded) if recorded else None,
        tokens_to_competence=stats.seed_interval(tokens) if tokens else None,
        params=_mean([r.summary.get("cost", {}).get("params") for r in runs]),
        flops_per_token=_mean([realised_flops_per_token(r) for r in runs]),
        sec_per_token=_mean([r.summary["train_seconds"] / r.summary["tokens"] for r in runs
                             if r.summary.get("tokens") and r.summary.get("train_seconds")]),
        needle2k=_mean([r.results.get("longctx", {}).get("by_length", {}).get("2048") for r in runs]),
        ppl=_mean([r.results.get("ppl", {}).get("ppl") for r in runs]),
    )
