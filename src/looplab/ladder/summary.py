"""The ladder's report: `looplab report` over the finished runs, plus a section on the ladder itself.

The report states the matching mode and lists failed variants (with their one-line errors); the
appended "Ladder runs" table gives each run's state, shape, matched figure, tokens and wall times.
`ladder.json` beside it holds the same in machine-readable form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.ladder.match import KEYS, MATCH_MODES
from looplab.ladder.presets import LadderPreset
from looplab.ladder.runner import Run, stage


def _shape_text(run: Run) -> str:
    s = run.shape
    text = ", ".join(f"{k}={v}" for k, v in s.overrides.items()) or "preset"
    return f"{text} ({s.note})" if s.note else text


def _ratio(run: Run) -> str:
    r = run.shape.ratio
    return "n/a" if r is None else f"{r:.3f}"


def _tokens(run: Run) -> str:
    path = run.dir / "summary.json"
    return f"{json.loads(path.read_text()).get('tokens', 0):,}" if path.exists() else "n/a"


def ladder_section(p: LadderPreset, runs: Sequence[Run], records: dict[str, dict[str, Any]], match: str,
                   seeds: int) -> list[str]:
    key = KEYS.get(match, "")
    lines = ["## Ladder runs", "",
             f"`looplab ladder --preset {p.name} --match {match} --seeds {seeds}`: {p.note}. Every run of a seed "
             f"saw the same data stream, byte tokenizer and budget ({p.total_tokens:,} tokens, seq_len {p.seq_len}, "
             f"batch {p.batch_size}; {p.alg_tokens:,} algorithmic)"
             + (f", training capped at {p.max_minutes:g} min per run (a capped run shows fewer tokens)"
                if p.max_minutes else "") + ".", "",
             f"| run | state | shape | {key or 'matched figure'} / baseline | tokens | train s | eval s | error |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        rec = records.get(run.label, {})
        times = [f"{rec[k]:.0f}" if k in rec else "n/a" for k in ("train_seconds", "eval_seconds")]
        lines.append(f"| `{run.label}` | {rec.get('state', 'n/a')} | {_shape_text(run)} | {_ratio(run)} | "
                     f"{_tokens(run)} | {' | '.join(times)} | {rec.get('error', '')} |")
    return lines


def write_ladder_report(p: LadderPreset, runs: Sequence[Run], records: dict[str, dict[str, Any]], match: str,
                        root: Path) -> Path:
    from looplab.eval.report import write_report

    finished = [str(r.dir) for r in runs if stage(r.dir) == "finished"]
    failed: dict[str, str] = {}
    for r in runs:
        if records[r.label].get("state") == "failed":
            prior = failed.get(r.variant)
            failed[r.variant] = (prior + "; " if prior else "") + f"seed {r.seed}: {records[r.label]['error']}"
    seeds = len({r.seed for r in runs})
    doc = {"preset": p.name, "match": match, "seeds": seeds, "runs": {r.label: {"dir": str(r.dir), **records[r.label]}
                                                                        for r in runs}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "ladder.json").write_text(json.dumps(doc, indent=2) + "\n")
    if not finished:
        first = next(iter(failed.items()), ("", "no runs"))
        raise LooplabError(f"every ladder run failed ({first[0]}: {first[1]}); see {root}/runs/*/ladder.log")
    path = write_report(finished, str(root / "report"), match=f"`{match}`: {MATCH_MODES[match]}", failed=failed)
    with path.open("a") as f:
        f.write("\n" + "\n".join(ladder_section(p, runs, records, match, seeds)) + "\n")
    return path
