"""The ladder's report: `looplab report` over the finished runs, plus sections on the ladder itself.

The report names every run by its arm (a preset's arm, else its variant), states the matching mode
and lists failed arms (with their one-line errors); the appended sections give the learning-rate
sweep (every value's IID validation loss and the chosen one) and each run's state, shape, matched
figure, learning rate, packing, tokens, why it stopped and wall times. `ladder.json` beside it holds
the same in machine-readable form. Every path written is relative to the ladder directory.

A run the time cap stopped (summary.json `stopped_by: time_cap`) trained less than the budget it was
compared on, so it is kept out of the report's comparisons and listed with the failed arms.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.eval.report import write_report
from looplab.ladder.match import KEYS, MATCH_MODES
from looplab.ladder.presets import LadderPreset
from looplab.ladder.runs import Run, relative, stage


def _shape_text(run: Run) -> str:
    s = run.shape
    text = ", ".join(f"{k}={v}" for k, v in s.overrides.items()) or "preset"
    return f"{text} ({s.note})" if s.note else text


def _ratio(run: Run) -> str:
    r = run.shape.ratio
    return "n/a" if r is None else f"{r:.3f}"


def _packing(run: Run) -> str:
    """The packing the run trained with (its config.json records the resolved one)."""
    path = run.dir / "config.json"
    return json.loads(path.read_text()).get("train", {}).get("packing", "n/a") if path.exists() else "n/a"


def _summary(run: Run) -> dict[str, Any]:
    path = run.dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _tokens(run: Run) -> str:
    s = _summary(run)
    return f"{s.get('tokens', 0):,}" if s else "n/a"


def stopped_by(run: Run) -> str | None:
    """Why the run's training ended (summary.json `stopped_by`: competence, token_budget, time_cap)."""
    return _summary(run).get("stopped_by")


def sweep_section(p: LadderPreset, sweep: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not sweep:
        return []
    grid = [f"{lr:g}" for lr in p.lr_grid]
    lines = ["## Learning-rate sweep", "",
             f"Every variant trained seed 0 for {p.sweep_tokens:,} tokens at each peak learning rate; the one "
             "with the lowest IID validation loss (answer tokens of fresh batches from the training "
             "distribution, the same batches for every variant) trained every seed. Bold: chosen; inf: the "
             "run failed or diverged.", "",
             "| variant | " + " | ".join(f"lr {g}" for g in grid) + " |", "|" + "---|" * (len(grid) + 1)]
    for variant, s in sweep.items():
        cells = []
        for g in grid:
            loss = s["grid"].get(g)
            text = "n/a" if loss is None else ("inf" if math.isinf(loss) else f"{loss:.4f}")
            cells.append(f"**{text}**" if s.get("chosen") is not None and f"{s['chosen']:g}" == g else text)
        lines.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    return lines + [""]


def ladder_section(p: LadderPreset, runs: Sequence[Run], records: dict[str, dict[str, Any]], match: str,
                   seeds: int) -> list[str]:
    key, b = KEYS.get(match, ""), p.base
    packings = sorted({_packing(r) for r in runs} - {"n/a"})
    lines = ["## Ladder runs", "",
             f"`looplab ladder --preset {p.name} --match {match} --seeds {seeds}`: {p.note}. Every run of a seed "
             f"saw the same data stream, byte tokenizer and budget ({b.total_tokens:,} tokens, seq_len {b.seq_len}, "
             f"batch {b.batch_size}, packing {', '.join(packings) or b.packing}; {b.alg_tokens:,} algorithmic)"
             + (f", stopping at {b.competence:.0%} IID answer accuracy on every task" if b.competence else "")
             + (f", with a {b.max_minutes:g}-minute safety cap on training (a run it stops is kept out of the "
                "comparisons)" if b.max_minutes else "") + ".", "",
             f"| run | state | shape | {key or 'matched figure'} / baseline | lr | packing | tokens | stopped by | "
             "train s | eval s | error |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        rec = records.get(run.label, {})
        times = [f"{rec[k]:.0f}" if k in rec else "n/a" for k in ("train_seconds", "eval_seconds")]
        lr = rec.get("lr")
        lines.append(f"| `{run.label}` | {rec.get('state', 'n/a')} | {_shape_text(run)} | {_ratio(run)} | "
                     f"{'n/a' if lr is None else f'{lr:g}'} | {_packing(run)} | {_tokens(run)} | "
                     f"{stopped_by(run) or 'n/a'} | {' | '.join(times)} | "
                     f"{rec.get('error', '')} |")
    return lines


def write_ladder_report(p: LadderPreset, runs: Sequence[Run], records: dict[str, dict[str, Any]], match: str,
                        root: Path, *, sweep: Mapping[str, Mapping[str, Any]] | None = None,
                        sweep_runs: Sequence[Run] = ()) -> Path:
    done = [r for r in runs if stage(r.dir, p.suite) == "finished"]
    capped = {r.label for r in done if stopped_by(r) == "time_cap"}
    finished = [str(r.dir) for r in done if r.label not in capped]
    failed: dict[str, str] = {}
    for r in runs:
        why = records.get(r.label, {}).get("error") if records.get(r.label, {}).get("state") == "failed" else None
        if r.label in capped:
            why = f"stopped by the {p.base.max_minutes:g}-minute time cap at {_tokens(r)} tokens (not compared)"
        if why:
            prior = failed.get(r.variant)
            failed[r.variant] = (prior + "; " if prior else "") + f"seed {r.seed}: {why}"
    seeds = len({r.seed for r in runs})
    doc = {"preset": p.name, "match": match, "seeds": seeds, "lr_sweep": dict(sweep or {}),
           "sweep_runs": {r.label: {"dir": relative(str(r.dir), root), **records.get(r.label, {})} for r in sweep_runs},
           "runs": {r.label: {"arm": r.variant, "variant": r.launch.variant, "dir": relative(str(r.dir), root),
                              "stopped_by": stopped_by(r), **records.get(r.label, {})} for r in runs}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "ladder.json").write_text(json.dumps(doc, indent=2) + "\n")
    if not finished:  # every run failed or was time-capped
        first = next(iter(failed.items()), ("", "no runs"))
        raise LooplabError(f"every ladder run failed ({first[0]}: {first[1]}); see {root}/runs/*/ladder.log")
    path = write_report(finished, str(root / "report"), match=match, match_note=f"`{match}`: {MATCH_MODES[match]}",
                        failed=failed, root=root)
    with path.open("a") as f:
        f.write("\n" + "\n".join([*sweep_section(p, sweep or {}), *ladder_section(p, runs, records, match, seeds)])
                + "\n")
    return path
