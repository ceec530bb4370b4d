"""`looplab report RUN_DIR... --out DIR`: the ladder table, verdicts and plots across runs.

A run directory is what train.py writes (`summary.json` required; `config.json`, `metrics.json`
and `eval_results/results_*.json` read when present). Runs are grouped by variant (plus its
options, so `shared_loop` iso_param and iso_flop stay apart); every figure is the mean over the
group's seeds with the sample standard deviation as spread. A column no run can fill shows "n/a".

Verdicts follow the seed README's success criteria against the `baseline` group:
1. algorithmic (IID) accuracy at least 5 points above the baseline's;
2. better OOD generalisation (mean OOD accuracy above the baseline's);
3. at most 2x the baseline's training time per token;
4. no perplexity collapse (perplexity at most 1.5x the baseline's).
A verdict needs >= 2 seeds on both sides; a criterion whose margin is within the combined seed
spread sqrt(std_variant^2 + std_baseline^2) is "within spread": with no clear failure elsewhere it
makes the verdict "not enough seeds".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from looplab.errors import LooplabError

BASELINE = "baseline"
MIN_SEEDS = 2
PPL_COLLAPSE = 1.5  # perplexity ratio to the baseline above which a variant has collapsed
# The seed README's "Expected Results (Hypotheses)" table, verbatim.
HYPOTHESES = {
    "Algorithmic acc": {"baseline": "70%", "shared_loop": "75%", "latent": "80%", "act": "82%"},
    "OOD parity @32": {"baseline": "20%", "shared_loop": "40%", "latent": "60%", "act": "65%"},
    "Needle @2k": {"baseline": "80%", "shared_loop": "80%", "latent": "85%", "act": "85%"},
    "PPL": {"baseline": "20", "shared_loop": "22", "latent": "21", "act": "21"},
    "Train time": {"baseline": "1×", "shared_loop": "1.2×", "latent": "1.5×", "act": "1.8×"},
}
# metric key -> (column title, kind); kinds: pct (accuracy), num, ratio.
METRICS = {
    "alg_acc": ("Algorithmic acc", "pct"),
    "ood_acc": ("OOD acc (mean)", "pct"),
    "parity32": ("OOD parity @32", "pct"),
    "needle2k": ("Needle @2k", "pct"),
    "ppl": ("PPL", "num"),
    "time_ratio": ("Train time", "ratio"),
}


@dataclass
class Run:
    path: Path
    variant: str  # group label: variant name, plus options when it has any
    seed: int | None
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # suite -> results payload


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LooplabError(f"cannot read {path} ({type(e).__name__})") from None


def load_results(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """Suite -> results from `results_all.json`, then single-suite files (which take precedence)."""
    out: dict[str, dict[str, Any]] = {}
    files = sorted(eval_dir.glob("results_*.json"), key=lambda p: (p.name != "results_all.json", p.name))
    for f in files:
        doc = _read_json(f)
        res = doc.get("results", {}) if isinstance(doc, dict) else {}
        if doc.get("suite") == "all":
            out.update({k: v for k, v in res.items() if k not in ("skipped", "suite_seconds")})
        elif "suite" in doc:
            out[doc["suite"]] = res
    return out


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
    opts = model.get("options") or {}
    if opts:
        variant += "(" + ",".join(f"{k}={v}" for k, v in sorted(opts.items())) + ")"
    seed = config.get("train", {}).get("seed")
    results = load_results(p / "eval_results") if (p / "eval_results").is_dir() else {}
    return Run(path=p, variant=variant, seed=seed, summary=summary, config=config, metrics=metrics, results=results)


def _cell(grid: dict[str, Any] | None, task: str, length: int) -> float | None:
    return (grid or {}).get("tasks", {}).get(task, {}).get("lengths", {}).get(str(length), {}).get("acc")


def algorithmic_grid(run: Run) -> dict[str, Any] | None:
    """The hub's algorithmic results when present, else the final grid in summary.json."""
    return run.results.get("algorithmic") or run.summary.get("final_eval")


def run_metrics(run: Run) -> dict[str, float | None]:
    grid = algorithmic_grid(run) or {}
    tokens, seconds = run.summary.get("tokens"), run.summary.get("train_seconds")
    cost = run.summary.get("cost", {})
    return {
        "alg_acc": grid.get("iid_acc"),
        "ood_acc": grid.get("ood_acc"),
        "parity32": _cell(grid, "parity", 32),
        "needle2k": run.results.get("longctx", {}).get("by_length", {}).get("2048"),
        "ppl": run.results.get("ppl", {}).get("ppl"),
        "sec_per_token": seconds / tokens if tokens and seconds else None,
        "params": cost.get("params"),
        "flops_per_token": cost.get("flops_per_token"),
    }


@dataclass
class Stat:
    mean: float | None
    std: float | None  # sample standard deviation over seeds; None with fewer than two values
    n: int


def stat(values: Sequence[float | None]) -> Stat:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Stat(None, None, 0)
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return Stat(mean, std, len(vals))


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.variant, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] != BASELINE, kv[0])))


def group_stats(groups: dict[str, list[Run]]) -> dict[str, dict[str, Stat]]:
    stats = {}
    for name, runs in groups.items():
        per_run = [run_metrics(r) for r in runs]
        stats[name] = {k: stat([m[k] for m in per_run]) for k in per_run[0]}
    base = stats.get(BASELINE, {}).get("sec_per_token")
    for s in stats.values():
        sp = s["sec_per_token"]
        ok = base is not None and base.mean and sp.mean
        s["time_ratio"] = Stat(sp.mean / base.mean, None if sp.std is None else sp.std / base.mean, sp.n) if ok \
            else Stat(None, None, 0)
    return stats


def _spread(a: Stat, b: Stat) -> float:
    return math.sqrt((a.std or 0.0) ** 2 + (b.std or 0.0) ** 2)


def criteria(v: dict[str, Stat], b: dict[str, Stat]) -> dict[str, str]:
    """pass / fail / within spread / n/a for each success criterion."""

    def margin(key: str, threshold: float) -> str:
        if v[key].mean is None or b[key].mean is None:
            return "n/a"
        diff = v[key].mean - b[key].mean - threshold
        if abs(diff) <= _spread(v[key], b[key]):
            return "within spread"
        return "pass" if diff > 0 else "fail"

    time = v["time_ratio"].mean
    ppl_v, ppl_b = v["ppl"].mean, b["ppl"].mean
    return {
        ">= +5 pts algorithmic": margin("alg_acc", 0.05),
        "better OOD": margin("ood_acc", 0.0),
        "<= 2x train time": "n/a" if time is None else ("pass" if time <= 2.0 else "fail"),
        "no PPL collapse": "n/a" if ppl_v is None or ppl_b is None else (
            "pass" if ppl_v <= PPL_COLLAPSE * ppl_b else "fail"),
    }


def verdict(name: str, stats: dict[str, dict[str, Stat]]) -> tuple[str, dict[str, str]]:
    if BASELINE not in stats:
        return "n/a: no baseline runs to compare with", {}
    v, b = stats[name], stats[BASELINE]
    marks = criteria(v, b)
    n_v, n_b = v["alg_acc"].n, b["alg_acc"].n
    if min(n_v, n_b) < MIN_SEEDS:
        return f"not enough seeds (n={n_v} vs baseline n={n_b}; need >= {MIN_SEEDS})", marks
    failed = [k for k, m in marks.items() if m == "fail"]
    if failed:  # a failure beyond the spread decides, whatever the other criteria say
        return f"does not win (fails: {', '.join(failed)})", marks
    if "within spread" in marks.values():
        return "not enough seeds: the seed spread is larger than the margin", marks
    if all(m == "n/a" for m in marks.values()):
        return "n/a: no comparable figures", marks
    return "wins on every criterion measured", marks


def fmt(s: Stat, kind: str) -> str:
    if s.mean is None:
        return "n/a"
    scale, unit, digits = {"pct": (100, "%", 1), "num": (1, "", 2), "ratio": (1, "×", 2)}[kind]
    text = f"{s.mean * scale:.{digits}f}"
    if s.std is not None:
        text += f" ± {s.std * scale:.{digits}f}"
    return text + unit


def _count(x: float | None) -> str:
    if x is None:
        return "n/a"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.2f}{suffix}"
    return f"{x:.0f}"


def ladder_table(groups: dict[str, list[Run]], stats: dict[str, dict[str, Stat]]) -> list[str]:
    head = ["variant", "seeds", "params", "FLOPs/token", *(t for t, _ in METRICS.values())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in groups.items():
        s = stats[name]
        seeds = ",".join(str(r.seed) for r in runs)
        row = [f"`{name}`", f"{len(runs)} ({seeds})", _count(s["params"].mean), _count(s["flops_per_token"].mean),
               *(fmt(s[k], kind) for k, (_, kind) in METRICS.items())]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def hypothesis_tables(stats: dict[str, dict[str, Stat]]) -> list[str]:
    """Rows are the seed's metrics; a measured group sits under its variant's hypothesis (a group
    label may carry options, e.g. `shared_loop(preset=iso_flop)`); unmeasured variants show n/a."""
    measured = {name.split("(")[0] for name in stats}
    cols = [*stats, *(v for v in HYPOTHESES["PPL"] if v not in measured)]
    keys = {"Algorithmic acc": "alg_acc", "OOD parity @32": "parity32", "Needle @2k": "needle2k", "PPL": "ppl",
            "Train time": "time_ratio"}
    lines = ["| metric | " + " | ".join(f"{c} (seed / measured)" for c in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for metric, hyp in HYPOTHESES.items():
        key = keys[metric]
        kind = METRICS[key][1]
        cells = [f"{hyp.get(c.split('(')[0], 'n/a')} / {fmt(stats[c][key], kind) if c in stats else 'n/a'}"
                 for c in cols]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return lines


def write_report(run_dirs: Sequence[str], out_dir: str, *, match: str = "",
                 failed: dict[str, str] | None = None) -> Path:
    """REPORT.md and plots; `match` says how the variants were sized, `failed` maps a variant that
    failed (in some seed) to its error, shown as a table row when no run of it finished."""
    from looplab.eval.report_plots import write_plots

    if not run_dirs:
        raise LooplabError("no run directories given; usage: looplab report RUN_DIR [RUN_DIR ...] --out DIR")
    runs, failed = [load_run(d) for d in run_dirs], dict(failed or {})
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LooplabError(f"--out {out} is not writable ({e.strerror})") from None
    groups = group_runs(runs)
    stats = group_stats(groups)
    plots, notes = write_plots(groups, out)
    md = ["# looplab report", "", f"{len(runs)} runs, {len(groups)} variants: "
          + ", ".join(f"`{n}` x{len(r)}" for n, r in groups.items()) + ".", "",
          *([f"Matching: {match}.", ""] if match else []),
          *([f"Failed: {', '.join(f'`{n}` ({e})' for n, e in failed.items())}.", ""] if failed else []),
          "## Ladder", "", "Mean ± sample standard deviation over seeds (no ± with one seed). Algorithmic acc: "
          "mean IID exact match; OOD acc: mean over every OOD cell; train time: seconds per training token "
          "relative to `baseline`; FLOPs/token: training FLOPs per token at the run's sequence length.", "",
          *ladder_table(groups, stats), *(f"| `{n}` | failed |" + " n/a |" * (len(METRICS) + 2) for n in failed
                                            if n not in groups), "", "## Verdicts", "",
          "Success criteria of the seed README against `baseline` (see `looplab.eval.report` for the rules).", ""]
    for name in groups:
        if name == BASELINE:
            continue
        text, marks = verdict(name, stats)
        detail = "; ".join(f"{k}: {m}" for k, m in marks.items())
        md.append(f"- `{name}`: **{text}**" + (f" ({detail})" if detail else ""))
    if len(groups) == 1 or BASELINE not in groups:
        md.append("- no variant to compare with a baseline" if len(groups) == 1 else "- no `baseline` runs given")
    md += ["", "## Hypotheses (seed README) beside the measurements", "", *hypothesis_tables(stats), "",
           "## Plots", ""]
    md += [f"![{p.stem}]({p.name})" for p in plots] + [f"- {n}" for n in notes]
    md += ["", "## Runs", ""] + [f"- `{r.path}`: {r.variant}, seed {r.seed}, suites: "
                                  f"{', '.join(sorted(r.results)) or 'none (summary.json only)'}" for r in runs]
    target = out / "REPORT.md"
    target.write_text("\n".join(md) + "\n")
    return target
