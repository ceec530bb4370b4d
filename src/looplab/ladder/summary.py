"""The ladder's report: `looplab report` over the finished runs, plus sections on the ladder itself.

The report names every run by its arm (a preset's arm, else its variant), states the matching mode
and lists failed arms (with their one-line errors); the appended sections give the learning-rate
sweep (every rate each arm tried, each seed's IID answer accuracy and validation loss, the chosen rate
and the edge extensions, with `sweep.png`: accuracy against the rate) and each run's state, shape,
matched figure, learning rate, packing, tokens, why it stopped and wall times. `ladder.json` beside it holds
the same in machine-readable form. Every path written is relative to the ladder directory.

A run the time cap stopped (summary.json `stopped_by: time_cap`) trained less than the budget it was
compared on, so it is kept out of the report's comparisons and listed with the failed arms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError
from looplab.eval.report import write_report
from looplab.ladder import wall
from looplab.ladder.match import KEYS, MATCH_MODES
from looplab.ladder.presets import LadderPreset
from looplab.ladder.runs import Run, relative, stage
from looplab.ladder.sweep import STEP, TIE


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


def _rate(run: Run, record: dict[str, Any]) -> str:
    """Training tokens per second of training time (evaluation excluded)."""
    tokens, seconds = _summary(run).get("tokens"), record.get("train_seconds")
    return f"{tokens / seconds:,.0f}" if tokens and seconds else "n/a"


def stopped_by(run: Run) -> str | None:
    """Why the run's training ended (summary.json `stopped_by`: competence, token_budget, time_cap)."""
    return _summary(run).get("stopped_by")


def _fig(x: float | None, percent: bool = False) -> str:
    if x is None:
        return "failed"
    return f"{100 * x:.1f}%" if percent else f"{x:.4f}"


def sweep_section(p: LadderPreset, sweep: Mapping[str, Mapping[str, Any]], plot: Path | None = None) -> list[str]:
    """The sweep's table (every rate each arm tried, each seed's figures and their means) and its plot."""
    if not sweep:
        return []
    seeds = range(p.sweep_seeds)
    lines = ["## Learning-rate sweep", "",
             f"Every arm trained seeds {', '.join(map(str, seeds))} for {p.sweep_tokens:,} tokens at each peak "
             f"learning rate of {', '.join(f'{lr:g}' for lr in p.lr_grid)}. The rate with the highest mean IID "
             f"answer accuracy (the run's final in-distribution grid, {p.base.screen_samples or p.base.eval_samples} "
             f"problems per cell) trained every seed; rates within "
             f"{100 * TIE:g} points of the best count as tied, and the lowest mean IID validation loss among "
             f"them wins. A winner at an edge of the rates tried added one more a factor {STEP:g} beyond it "
             f"(extension), at most {p.sweep_steps} per arm; a chosen rate still at an edge was not bracketed. "
             "Bold: chosen; failed: the run failed or diverged (a rate with a failed seed is not chosen).", "",
             "| arm | lr | " + " | ".join(f"IID acc s{s}" for s in seeds) + " | mean IID acc | "
             + " | ".join(f"val loss s{s}" for s in seeds) + " | mean val loss | |",
             "|" + "---|" * (2 * len(seeds) + 5)]
    for arm, s in sweep.items():
        lrs = [point["lr"] for point in s["points"].values()]
        for key, point in s["points"].items():
            chosen = s.get("chosen") is not None and f"{s['chosen']:g}" == key
            cells = ([_fig(x["iid_acc"], True) for x in point["seeds"]] + [_fig(point["iid_acc"], True)]
                     + [_fig(x["val_loss"]) for x in point["seeds"]] + [_fig(point["val_loss"])])
            edge = chosen and point["lr"] in (min(lrs), max(lrs))
            note = ", ".join(n for n, on in (("chosen", chosen), ("extension", point["extended"]),
                                             ("at an edge: not bracketed", edge)) if on)
            lr = f"**{key}**" if chosen else key
            lines.append(f"| `{arm}` | {lr} | " + " | ".join(cells) + f" | {note} |")
    if plot is not None:
        lines += ["", f"![sweep]({plot.name})"]
    return lines + [""]


def sweep_plot(sweep: Mapping[str, Mapping[str, Any]], out: Path) -> Path | None:
    """IID answer accuracy against the learning rate (log x): one line per arm through its seed means,
    each seed a point, the chosen rate ringed. None when no run of the sweep has figures."""
    arms = {arm: [pt for pt in s["points"].values() if any(x["iid_acc"] is not None for x in pt["seeds"])]
            for arm, s in sweep.items()}
    if not any(arms.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, pts in arms.items():
        if not pts:
            continue
        means = [(pt["lr"], pt["iid_acc"]) for pt in pts if pt["iid_acc"] is not None]
        (line,) = ax.plot([m[0] for m in means], [m[1] for m in means], marker="o", label=arm)
        seeds = [(pt["lr"], x["iid_acc"]) for pt in pts for x in pt["seeds"] if x["iid_acc"] is not None]
        ax.scatter([x[0] for x in seeds], [x[1] for x in seeds], s=14, alpha=0.5, color=line.get_color())
        added = [(pt["lr"], pt["iid_acc"]) for pt in pts if pt["extended"] and pt["iid_acc"] is not None]
        ax.scatter([a[0] for a in added], [a[1] for a in added], s=70, marker="s", facecolors="none",
                   edgecolors=line.get_color())
        won = [m for m in means if sweep[arm].get("chosen") == m[0]]
        if won:
            ax.scatter([won[0][0]], [won[0][1]], s=160, facecolors="none", edgecolors=line.get_color())
    rates = sorted({pt["lr"] for pts in arms.values() for pt in pts})
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{lr:g}" for lr in rates], rotation=45)
    ax.minorticks_off()
    ax.set_ylim(-0.03, 1.03)
    ax.set(xlabel="peak learning rate", ylabel="IID answer accuracy",
           title="Learning-rate sweep: line = seed mean, dots = seeds, square = extension, ring = chosen")
    ax.legend(fontsize=8)
    ax.title.set_fontsize(9)
    fig.tight_layout()
    path = out / "sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def wall_line(root: Path) -> str:
    """The ladder's wall time, summed over the invocations that ran it (wall.json), evaluation included."""
    invocations = wall.read(root)
    if not invocations:
        return "Wall time: not recorded (no wall.json)."
    total = sum(i["seconds"] for i in invocations)
    parts = ", ".join(f"{i['seconds'] / 60:.0f}" for i in invocations)
    return (f"Wall time: {total / 60:.0f} minutes, sweep, training and evaluation included, over {len(invocations)} "
            f"invocation{'s' if len(invocations) > 1 else ''} of the ladder ({parts} min; `wall.json`).")


def lane_line(doc: Mapping[str, Any], top: int = 3) -> str:
    """Where a ladder's time went: the lane-minutes (one run's seconds on the lane that ran it) of its
    sweep, training and evaluation, summed from ladder.json's records, and the arms whose evaluation
    cost the most. Lanes run side by side, so the wall time is about their sum over the lanes, plus the
    idle tail while the last runs finish."""
    def minutes(records: Mapping[str, Any], key: str) -> float:
        return sum(float(r.get(key) or 0.0) for r in records.values()) / 60

    sweep, runs = doc.get("sweep_runs", {}), doc.get("runs", {})
    by_arm: dict[str, float] = {}
    for rec in runs.values():
        arm = rec.get("arm", "?")
        by_arm[arm] = by_arm.get(arm, 0.0) + float(rec.get("eval_seconds") or 0.0) / 60
    costly = sorted(by_arm.items(), key=lambda kv: -kv[1])[:top]
    parts = ", ".join(f"`{arm}` {m:.0f}" for arm, m in costly if m >= 0.5)
    return (f"Lane time: sweep {minutes(sweep, 'train_seconds') + minutes(sweep, 'eval_seconds'):.0f}, training "
            f"{minutes(runs, 'train_seconds'):.0f} and evaluation {minutes(runs, 'eval_seconds'):.0f} lane-minutes"
            + (f"; the costliest evaluations: {parts}" if parts else "")
            + " (each main run's seconds: the ladder-runs table).")


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
             "train s | tokens/s | eval s | error |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        rec = records.get(run.label, {})
        times = [f"{rec[k]:.0f}" if k in rec else "n/a" for k in ("train_seconds", "eval_seconds")]
        lr = rec.get("lr")
        lines.append(f"| `{run.label}` | {rec.get('state', 'n/a')} | {_shape_text(run)} | {_ratio(run)} | "
                     f"{'n/a' if lr is None else f'{lr:g}'} | {_packing(run)} | {_tokens(run)} | "
                     f"{stopped_by(run) or 'n/a'} | {times[0]} | {_rate(run, rec)} | {times[1]} | "
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
                        failed=failed, root=root, header=[wall_line(root), lane_line(doc)], reference=p.reference)
    plot = sweep_plot(sweep or {}, path.parent)
    with path.open("a") as f:
        f.write("\n" + "\n".join([*sweep_section(p, sweep or {}, plot), *ladder_section(p, runs, records, match, seeds)])
                + "\n")
    return path
