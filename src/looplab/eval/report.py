"""`looplab report RUN_DIR... --out DIR`: the comparison table, verdicts, per-task tables and plots.

Figures (looplab.eval.report_data): in-distribution (IID) and out-of-distribution (OOD) accuracy as
floor-normalised means over tasks, (acc - floor) / (1 - floor), with 95% intervals from a bootstrap
over seeds and examples; OOD only over the runs that reached competence; tokens to competence;
training FLOPs per token; time per token against the reference arm. Every per-task table prints the
task's chance floor beside its accuracies.

Verdicts, for each variant against the reference arm (`baseline` unless `reference` names another, as
the halting ladder names `latent`, the fixed-K sibling of its adaptive arms):
- withheld when the matched figure (FLOPs per token by default) differs by more than MATCH_TOLERANCE:
  a comparison at unequal compute says nothing about the architecture;
- withheld with fewer than MIN_SEEDS seeds on either side (for OOD: competent seeds);
- otherwise, per figure, "helps" / "hurts" when the difference is significant and "no difference at
  this budget" when it is not. Where the runs kept per-problem outcomes (every grid since the
  answer-accuracy protocol), the accuracy difference is paired (both arms' problems resampled
  together, seeds per arm) and the accuracy verdicts of one report are Holm-adjusted together; older
  runs fall back to the unpaired interval of the difference excluding zero. Tokens to competence
  resamples seeds only and is not adjusted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from looplab.errors import LooplabError
from looplab.eval import stats
from looplab.eval.report_data import (
    BASELINE,
    GroupStats,
    Run,
    cell_accuracy,
    cells_of,
    competence,
    competent,
    group_runs,
    group_stats,
    load_run,
    outcomes_of,
    realised_flops_per_token,
    run_cells,
    shared_keys,
    stopped_by,
)
from looplab.eval.report_exits import exits_section
from looplab.eval.report_goal import goal_section
from looplab.eval.report_halting import halting_section
from looplab.eval.report_plots import write_plots
from looplab.eval.stats import Interval

MIN_SEEDS = 3  # seeds on each side before a verdict is drawn
MATCH_TOLERANCE = 0.10  # largest relative gap of the matched figure for a verdict
MATCH_FIGURES = {"flops": ("flops_per_token", "realised training FLOPs per token"),
                 "params": ("params", "parameters"), "config": ("flops_per_token", "realised training FLOPs per token")}
# The seed README's "Expected Results (Hypotheses)" table, verbatim.
HYPOTHESES = {
    "Algorithmic acc": {"baseline": "70%", "shared_loop": "75%", "latent": "80%", "act": "82%"},
    "OOD parity @32": {"baseline": "20%", "shared_loop": "40%", "latent": "60%", "act": "65%"},
    "Needle @2k": {"baseline": "80%", "shared_loop": "80%", "latent": "85%", "act": "85%"},
    "PPL": {"baseline": "20", "shared_loop": "22", "latent": "21", "act": "21"},
    "Train time": {"baseline": "1×", "shared_loop": "1.2×", "latent": "1.5×", "act": "1.8×"},
}


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def fmt_interval(iv: Interval | None, scale: float = 100.0, unit: str = "%", digits: int = 1) -> str:
    if iv is None:
        return "n/a"
    return f"{iv.mean * scale:.{digits}f}{unit} [{iv.lo * scale:.{digits}f}, {iv.hi * scale:.{digits}f}]"


def count(x: float | None) -> str:
    if x is None:
        return "n/a"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.2f}{suffix}"
    return f"{x:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# --- verdicts ------------------------------------------------------------------------------------
def matched_gap(v: GroupStats, b: GroupStats, match: str, reference: str = BASELINE) -> str | None:
    """Why a verdict is withheld for unequal compute (or size), or None when matched."""
    key, label = MATCH_FIGURES[match]
    r = ratio(getattr(v, key), getattr(b, key))
    if r is None:
        return f"{label} unknown"
    if abs(r - 1) > MATCH_TOLERANCE:
        return f"{label} is {r:.2f}x `{reference}`'s (a verdict needs them within {MATCH_TOLERANCE:.0%})"
    return None


def compare_accuracy(v_runs: Sequence[Run], b_runs: Sequence[Run], split: str) -> tuple[str, Interval | None]:
    """Verdict and difference (variant - reference) of the floor-normalised accuracy on the cells both have:
    paired on per-problem outcomes where both kept them (a `stats.Difference` with its p-value, whose
    verdict `verdict_lines` adjusts with the report's others), else unpaired on cell accuracies."""
    if split == "ood":
        v_runs, b_runs = competent(v_runs), competent(b_runs)
    if min(len(v_runs), len(b_runs)) < MIN_SEEDS:
        what = "competent seeds" if split == "ood" else "seeds"
        return f"withheld: {len(v_runs)} vs {len(b_runs)} {what} (need >= {MIN_SEEDS} each)", None
    keys = [k for k in shared_keys(b_runs, split) if k in set(shared_keys(v_runs, split))]
    oa, ob = outcomes_of(v_runs, keys), outcomes_of(b_runs, keys)
    if oa is not None and ob is not None and [x.shape[1] for x in oa.cells] == [x.shape[1] for x in ob.cells]:
        diff = stats.paired_difference(oa, ob)
        return stats.verdict(diff), diff
    a, b = cells_of(v_runs, keys), cells_of(b_runs, keys)
    if a is None or b is None:
        return "n/a: no shared cells", None
    diff = stats.difference(a, b)
    return stats.verdict(diff), diff


def compare_tokens(v_runs: Sequence[Run], b_runs: Sequence[Run]) -> tuple[str, Interval | None]:
    """Sample efficiency: tokens to competence among competent runs (fewer is better)."""
    tv = [competence(r).tokens for r in competent(v_runs) if competence(r).tokens is not None]
    tb = [competence(r).tokens for r in competent(b_runs) if competence(r).tokens is not None]
    if min(len(tv), len(tb)) < MIN_SEEDS:
        return f"withheld: {len(tv)} vs {len(tb)} competent seeds (need >= {MIN_SEEDS} each)", None
    diff = stats.seed_difference(tv, tb)
    return stats.verdict(diff, higher_is_better=False), diff


def verdict_lines(groups: dict[str, list[Run]], stats_by: dict[str, GroupStats], match: str,
                  reference: str = BASELINE) -> list[str]:
    if reference not in groups:
        return [f"- no `{reference}` runs given: nothing to compare with"]
    rows: dict[str, list[tuple[str, str, Interval | None]]] = {}
    withheld: dict[str, str] = {}
    for name, runs in groups.items():
        if name == reference:
            continue
        gap = matched_gap(stats_by[name], stats_by[reference], match, reference)
        if gap:
            withheld[name] = gap
            continue
        rows[name] = [("IID", *compare_accuracy(runs, groups[reference], "iid")),
                      ("OOD", *compare_accuracy(runs, groups[reference], "ood")),
                      ("tokens to competence", *compare_tokens(runs, groups[reference]))]
    paired = [(name, i) for name, parts in rows.items() for i, (_, _, d) in enumerate(parts)
              if isinstance(d, stats.Difference)]
    adjusted = stats.holm_verdicts([rows[name][i][2] for name, i in paired])
    for (name, i), text in zip(paired, adjusted):
        label, _, diff = rows[name][i]
        rows[name][i] = (label, text, diff)
    lines = []
    for name, runs in groups.items():
        if name in withheld:
            lines.append(f"- `{name}`: **withheld**: {withheld[name]}")
            continue
        if name not in rows:
            continue
        parts = []
        for label, text, diff in rows[name]:
            if diff is None:
                parts.append(f"{label}: {text}")
            elif label == "tokens to competence":
                parts.append(f"{label}: **{text}** (Δ {diff.mean / 1e6:+.2f}M [{diff.lo / 1e6:+.2f}M, "
                             f"{diff.hi / 1e6:+.2f}M])")
            else:
                p = f", paired, p = {diff.p:.3g} before Holm" if isinstance(diff, stats.Difference) else ""
                parts.append(f"{label}: **{text}** (Δ {fmt_interval(diff, unit=' pts')}{p})")
        capped = [r for r in runs if stopped_by(r) == "time cap"]
        note = ""
        if capped:
            tokens = sorted(r.summary.get("tokens", 0) for r in capped)
            note = (f" ({len(capped)} of {len(runs)} runs stopped at the time cap after {tokens[0] / 1e6:.2f}M-"
                    f"{tokens[-1] / 1e6:.2f}M tokens, short of the token budget: their IID figure reflects less "
                    f"training than `{reference}`'s budget allowed)")
        lines.append(f"- `{name}`: " + "; ".join(parts) + note)
    return lines or [f"- only `{reference}`: nothing to compare"]


# --- tables --------------------------------------------------------------------------------------
def arm_table(groups: dict[str, list[Run]]) -> list[str]:
    """Each name the report uses: its variant, its settings other than the defaults, and its packing."""
    lines = ["| arm | variant | settings (non-default) | packing | runs |", "|---|---|---|---|---|"]
    for name, runs in groups.items():
        r = runs[0]
        settings = ", ".join(f"{k}={v}" for k, v in sorted(r.settings.items())) or "defaults"
        packing = ", ".join(sorted({str(x.packing or "n/a") for x in runs}))
        lines.append(f"| `{name}` | `{r.variant}` | {settings} | {packing} | {len(runs)} |")
    return lines


def headline_table(groups: dict[str, list[Run]], stats_by: dict[str, GroupStats],
                   reference: str = BASELINE) -> list[str]:
    base = stats_by.get(reference)
    head = ["arm", "seeds", "competent", "tokens to competence", "params", f"realised FLOPs/token (x {reference})",
            "IID, floor-normalised", "OOD, floor-normalised (competent runs)", "IID answer accuracy",
            "IID well-formed", "train time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in groups.items():
        s = stats_by[name]
        seeds = ",".join(str(r.seed) for r in runs)
        comp = "n/a" if s.competent is None else f"{s.competent}/{s.seeds}"
        ttc = "n/a" if s.tokens_to_competence is None else fmt_interval(s.tokens_to_competence, 1e-6, "M", 2)
        flop_ratio = ratio(s.flops_per_token, base.flops_per_token if base else None)
        time_ratio = ratio(s.sec_per_token, base.sec_per_token if base else None)
        row = [f"`{name}`", f"{len(runs)} ({seeds})", comp, ttc, count(s.params),
               f"{count(s.flops_per_token)} ({'n/a' if flop_ratio is None else f'{flop_ratio:.2f}x'})",
               fmt_interval(s.iid), fmt_interval(s.ood) + (f" (n={s.ood_seeds})" if s.ood_seeds != s.seeds else ""),
               fmt_interval(s.iid_raw), pct(s.iid_well_formed),
               "n/a" if time_ratio is None else f"{time_ratio:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def task_tables(groups: dict[str, list[Run]]) -> list[str]:
    """One table per task: variants by lengths, answer accuracy [95% interval] over all runs, floors on top."""
    keys = list(dict.fromkeys(k for runs in groups.values() for r in runs for k in run_cells(r)))
    lines: list[str] = []
    for task in dict.fromkeys(t for t, _ in keys):
        lengths = sorted({n for t, n in keys if t == task})
        splits, floors = {}, {}
        for runs in groups.values():
            for r in runs:
                for (t, n), c in run_cells(r).items():
                    if t == task:
                        splits[n], floors[n] = c.split, c.floor
        cols = [f"{n} ({splits[n].upper()})" for n in lengths]
        lines += [f"### {task}", "", "| arm | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1),
                  "| chance floor | " + " | ".join(pct(floors[n]) for n in lengths) + " |"]
        for name, runs in groups.items():
            cells = []
            for n in lengths:
                iv = cell_accuracy(runs, (task, n))
                cells.append("n/a" if iv is None else fmt_interval(iv))
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def seed_table(groups: dict[str, list[Run]]) -> list[str]:
    """How often does it work? Per task, at its longest cell: each seed's answer accuracy and the count of
    seeds at or above stats.EXTRAPOLATES there, since seeds often split between finding the algorithm
    and not, which a mean hides; then the papers' figures: scaled accuracy (acc - floor) / (1 - floor)
    (1 perfect, 0 chance), its median over seeds and the best seed."""
    keys = list(dict.fromkeys(k for runs in groups.values() for r in runs for k in run_cells(r)))
    longest = {task: max(n for t, n in keys if t == task) for task in dict.fromkeys(t for t, _ in keys)}
    lines = ["| arm | " + " | ".join(f"{t} @{n}" for t, n in longest.items()) + " |",
             "|" + "---|" * (len(longest) + 1)]
    for name, runs in groups.items():
        cols = []
        for task, n in longest.items():
            accs = [(r.seed, run_cells(r)[task, n].acc) for r in runs if (task, n) in run_cells(r)]
            good = sum(a >= stats.EXTRAPOLATES for _, a in accs)
            floor = next((run_cells(r)[task, n].floor for r in runs if (task, n) in run_cells(r)), 0.0)
            scaled = sorted(stats.scaled(a, floor) for _, a in accs)
            cols.append(f"{good}/{len(accs)} ≥ {stats.EXTRAPOLATES:.0%}: "
                        + ", ".join(f"s{seed} {pct(a, 0)}" for seed, a in accs)
                        + f"; scaled median {np.median(scaled):.2f}, best {scaled[-1]:.2f}" if accs else "n/a")
        lines.append(f"| `{name}` | " + " | ".join(cols) + " |")
    return lines


def competence_table(groups: dict[str, list[Run]]) -> list[str]:
    lines = ["| run | target | reached | tokens to competence | tokens trained | stopped by | checkpoint scored "
             "| best periodic IID | realised FLOPs per token, total |", "|---|---|---|---|---|---|---|---|---|"]
    for name, runs in groups.items():
        for r in runs:
            c = competence(r)
            reached = "n/a" if c.reached is None else ("yes" if c.reached else "**no**")
            total, scored = r.summary.get("realised_flops"), r.summary.get("scored") or {}
            kept = f"step {scored['step']:,} ({scored.get('why', '')})" if scored.get("step") is not None else "n/a"
            lines.append(f"| `{name}` seed {r.seed} | {pct(c.threshold, 0)} | {reached} | "
                         f"{'n/a' if c.tokens is None else f'{c.tokens:,}'} | {r.summary.get('tokens', 0):,} | "
                         f"{stopped_by(r)} | {kept} | {pct(c.best_iid)} | {count(realised_flops_per_token(r))}, "
                         f"{'n/a' if total is None else f'{total:.3g}'} |")
    return lines


def other_suites_table(groups: dict[str, list[Run]], stats_by: dict[str, GroupStats]) -> list[str]:
    if all(s.needle2k is None and s.ppl is None for s in stats_by.values()):
        return []
    lines = ["## Other suites", "", "Means over seeds.", "", "| arm | needle @2k | perplexity |", "|---|---|---|"]
    for name in groups:
        s = stats_by[name]
        lines.append(f"| `{name}` | {pct(s.needle2k)} | {'n/a' if s.ppl is None else f'{s.ppl:.2f}'} |")
    return lines + [""]


def hypothesis_table(groups: dict[str, list[Run]], stats_by: dict[str, GroupStats]) -> list[str]:
    """The seed's hypotheses beside what was measured (IID: plain answer accuracy; OOD parity @32; train
    time against `baseline`, as the seed's figures are)."""
    measured = {name.split("(")[0] for name in groups}
    cols = [*groups, *(v for v in HYPOTHESES["PPL"] if v not in measured)]
    base = stats_by.get(BASELINE)

    def value(name: str, metric: str) -> str:
        if name not in stats_by:
            return "n/a"
        s = stats_by[name]
        if metric == "Algorithmic acc":
            return fmt_interval(s.iid_raw)
        if metric == "OOD parity @32":
            iv = cell_accuracy(competent(groups[name]), ("parity", 32))
            return "n/a" if iv is None else fmt_interval(iv)
        if metric == "Needle @2k":
            return pct(s.needle2k)
        if metric == "PPL":
            return "n/a" if s.ppl is None else f"{s.ppl:.2f}"
        r = ratio(s.sec_per_token, base.sec_per_token if base else None)
        return "n/a" if r is None else f"{r:.2f}×"

    lines = ["| metric | " + " | ".join(f"{c} (seed / measured)" for c in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for metric, hyp in HYPOTHESES.items():
        lines.append(f"| {metric} | " + " | ".join(f"{hyp.get(c.split('(')[0], 'n/a')} / {value(c, metric)}"
                                                   for c in cols) + " |")
    return lines


def protocol_line(groups: dict[str, list[Run]]) -> str:
    """How the runs were scored: the score, the test set (digest and problems per cell) and the seeds."""
    runs = [r for rs in groups.values() for r in rs]
    digests = sorted({r.test_set.get("digest", "") for r in runs})
    sizes = {(r.test_set.get("samples"), r.test_set.get("ood_samples")) for r in runs if r.test_set}
    if digests == [""]:
        where = "each run's own draws (results from before fixed test sets)"
    elif len(digests) == 1:
        iid, ood = next(iter(sizes)) if len(sizes) == 1 else (None, None)
        where = (f"one test set for every run, digest `{digests[0][:16]}`"
                 + (f", {iid} problems per IID cell and {ood or iid} per OOD cell" if iid else ""))
    else:
        where = f"**{len(digests)} different test sets** (runs not scored on the same problems)"
    seeds = ", ".join(f"`{n}` {len(rs)}" for n, rs in groups.items())
    return f"Protocol: answer accuracy (well-formedness beside it) on {where}; seeds per arm: {seeds}."


# --- the report ----------------------------------------------------------------------------------
def write_report(run_dirs: Sequence[str], out_dir: str, *, match: str = "flops", match_note: str = "",
                 failed: dict[str, str] | None = None, root: str | Path | None = None,
                 header: Sequence[str] = (), reference: str = BASELINE) -> Path:
    """REPORT.md and plots. `match` names the figure the variants were matched on (flops, params or
    config, which is judged on FLOPs), `match_note` says how; `failed` maps a variant that failed (in
    some seed) to its error; run paths are written relative to `root` (a ladder's directory) when given;
    `header`: paragraphs placed under the protocol line (a ladder's wall time); `reference`: the arm
    every verdict, FLOP ratio and time ratio is taken against."""
    if match not in MATCH_FIGURES:
        raise LooplabError(f"unknown --match '{match}'; allowed: {', '.join(MATCH_FIGURES)}")
    if not run_dirs:
        raise LooplabError("no run directories given; usage: looplab report RUN_DIR [RUN_DIR ...] --out DIR")
    runs, failed = [load_run(d) for d in run_dirs], dict(failed or {})
    groups = group_runs(runs, reference)
    if reference != BASELINE and reference not in groups:  # a named reference must exist (no baseline: no verdicts)
        raise LooplabError(f"unknown --reference '{reference}': no such arm among the runs; allowed: "
                           f"{', '.join(groups)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LooplabError(f"--out {out} is not writable ({e.strerror})") from None
    stats_by = {name: group_stats(g) for name, g in groups.items()}
    plots, notes = write_plots(groups, out)
    md = ["# looplab report", "", f"{len(runs)} runs, {len(groups)} arms: "
          + ", ".join(f"`{n}` x{len(r)}" for n, r in groups.items()) + ".", "",
          *arm_table(groups), "",
          protocol_line(groups), "", *(line for h in header for line in (h, "")),
          f"Matching: {match_note or match}.", "",
          *([f"Failed: {', '.join(f'`{n}` ({e})' for n, e in failed.items())}.", ""] if failed else []),
          "## Comparison", "",
          "Accuracies are answer accuracy (the answer up to the first stop token; docs/EVAL.md), floor-normalised per cell as (acc - floor) / (1 - floor) (0 is chance, "
          "1 is perfect, below 0 is worse than always giving the most common answer) and averaged over "
          "tasks; brackets are 95% intervals from a bootstrap over seeds and problems (resampled jointly "
          "where the runs kept per-problem outcomes). Well-formed: the share of outputs that stop right "
          "after an answer of the target's length. OOD counts only the "
          "runs that reached competence (n= when that is fewer than all). Tokens to competence: training "
          "tokens at the first periodic evaluation where every task reached the target. Train time: seconds "
          f"per training token relative to `{reference}`.", "",
          *headline_table(groups, stats_by, reference),
          *(f"| `{n}` | failed |" + " n/a |" * 9 for n in failed if n not in groups), "",
          "## Verdicts", "",
          f"Against `{reference}`; a verdict needs the matched figure within {MATCH_TOLERANCE:.0%}, at least "
          f"{MIN_SEEDS} seeds (competent seeds for OOD and tokens), and says helps / hurts only when the "
          "difference is significant: paired on the same problems and Holm-adjusted over this report's "
          "accuracy verdicts where the runs kept per-problem outcomes, else when the 95% interval of the "
          "difference excludes zero.", "",
          *verdict_lines(groups, stats_by, match, reference), "",
          "## Per task", "", "Answer accuracy (not normalised) with 95% intervals over all runs of the variant; "
          "the first row is the chance floor of each length.", "",
          *task_tables(groups),
          "## Per seed", "", "Each seed's answer accuracy at each task's longest length, and how many seeds "
          f"reach {stats.EXTRAPOLATES:.0%} there (seeds often split between finding the algorithm and not); then "
          "the scaled accuracy (acc - chance) / (1 - chance) that papers report (1 perfect, 0 chance): the median "
          "over seeds and the best seed.", "",
          *seed_table(groups), "",
          *goal_section(groups),
          "## Competence per run", "", *competence_table(groups), "",
          *other_suites_table(groups, stats_by),
          "## Hypotheses (seed README) beside the measurements", "", *hypothesis_table(groups, stats_by), "",
          *exits_section(groups, out),
          *halting_section(groups),
          "## Plots", ""]
    md += [f"![{p.stem}]({p.name})" for p in plots] + [f"- {n}" for n in notes]
    where = "" if root is None else " (paths relative to the ladder directory)"
    md += ["", f"## Runs{where}", ""] + [
        f"- `{r.path if root is None else os.path.relpath(r.path, root)}`: {name}, seed {r.seed}, suites: "
        f"{', '.join(sorted(r.results)) or 'none (summary.json only)'}" for name, rs in groups.items() for r in rs]
    target = out / "REPORT.md"
    target.write_text("\n".join(md) + "\n")
    return target
