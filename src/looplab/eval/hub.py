"""eval_hub: load a checkpoint, run a suite, write `results_<suite>.json` with full metadata.

Suites are a plain registry from name to runner `(checkpoint, EvalConfig) -> results dict`; `all`
runs every applicable suite into one `results_all.json`. The algorithmic suite scores the fixed test
sets (looplab.data.testsets: read from `EvalConfig.test_sets`, else generated, the same problems either
way) and records their digests and sizes in `metadata.test_set`. It also scores the exit
criteria asked for (`EvalConfig.exits`, looplab.eval.exits) on the grid's own examples; the report
shows them (looplab.eval.report_exits). The checkpoint's path is recorded relative to the results
file's directory. Every file this module writes validates
against `results.schema.json` beside it (docs/EVAL.md describes the schema).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from looplab.checkpoint import Checkpoint, load_checkpoint
from looplab.config import EvalConfig
from looplab.data.tasks import in_format
from looplab.data.testsets import TestSet
from looplab.errors import LooplabError
from looplab.eval import algorithmic, longctx, ppl, selftest
from looplab.eval.answers import write_outputs
from looplab.eval.custom import suite_custom
from looplab.eval.exits import exit_grid
from looplab.io import write_json
from looplab.meta import file_sha256, provenance
from looplab.models import get_spec
from looplab.models.base import LoopedModel
from looplab.runtime import resolve_device, set_threads

SCHEMA = "looplab-results-v1"
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
SUITE_NAMES = ("algorithmic", "longctx", "ppl", "selftest", "custom", "all")
VERSIONS = {"algorithmic": algorithmic.GRID_VERSION, "longctx": longctx.GRID_VERSION, "ppl": ppl.GRID_VERSION,
            "selftest": selftest.GRID_VERSION}


def suite_algorithmic(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    """The grid at the trained loop count, with per-length curves and the OOD summary; with
    `n_loops`, also `results["loops"][str(n)]`, the same grid at each loop count (looped variants;
    others get an empty sweep and `loops_note`), on the first `loop_samples` problems of each cell when
    that is set (`results["loop_samples"]`), as are the exit criteria's grids (with `exits_fixed`, the
    trained count on that subset, beside them). Scores come from exact decoding; a variant with an
    approximate cache gets its speed in `approximate_cache`, never a score. Every one of them reads the
    same test set, whose record (digests, sizes) is `results["test_set"]`."""
    tasks = in_format(cfg.tasks, cfg.answer_format) if cfg.tasks else ckpt.meta.get("tasks") or None
    test_set = TestSet(cfg.samples, cfg.ood_count, cfg.test_sets)
    grid = dict(problems=test_set, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                use_cache=cfg.use_cache)
    results = algorithmic.run_grid(ckpt.model, ckpt.tokenizer, tasks, keep_outputs=True, **grid)
    results.update(algorithmic.ood_summary(results))
    halting = algorithmic.halting_by_length(ckpt.model, ckpt.tokenizer, tasks, problems=test_set)
    if halting:
        results["halting_by_length"] = halting
    subset = {**grid, "problems": algorithmic.first(test_set, cfg.loop_samples)}  # what sweeps and exits score
    if cfg.loop_samples and (cfg.n_loops or cfg.exits) and isinstance(ckpt.model, LoopedModel):
        results["loop_samples"] = cfg.loop_samples
    if cfg.n_loops:
        results.update(algorithmic.loop_sweep(ckpt.model, ckpt.tokenizer, tasks, cfg.n_loops, **subset))
    if cfg.exits and isinstance(ckpt.model, LoopedModel):
        results["exits"] = {name: exit_grid(ckpt.model, ckpt.tokenizer, tasks, name, threshold=cfg.exit_threshold,
                                            **subset) for name in cfg.exits}
        if cfg.loop_samples:  # the fixed count on the same subset, for the exits table to compare against
            results["exits_fixed"] = algorithmic.run_grid(ckpt.model, ckpt.tokenizer, tasks, **subset)
    elif cfg.exits:
        results["exits_note"] = f"variant '{ckpt.model.cfg.variant}' has no loop count; exits not scored"
    if cfg.use_cache and ckpt.model.approximate_cache():
        results["approximate_cache"] = algorithmic.approximate_cache_speed(
            ckpt.model, ckpt.tokenizer, tasks, problems=test_set, samples=min(cfg.samples, 32),
            max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    results["test_set"] = test_set.record()
    return results


def suite_longctx(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    return longctx.run_longctx(ckpt.model, ckpt.tokenizer, lengths=cfg.needle_lengths, depths=cfg.needle_depths,
                               trials=cfg.needle_trials, seed=cfg.seed, batch_size=cfg.batch_size,
                               use_cache=cfg.use_cache)


def training_seq_len(ckpt: Checkpoint, path: str) -> int | None:
    """The sequence length the checkpoint was trained at: its metadata, else the run's config.json."""
    if ckpt.meta.get("seq_len"):
        return int(ckpt.meta["seq_len"])
    config = Path(path).parent / "config.json"
    if config.exists():
        return json.loads(config.read_text()).get("train", {}).get("seq_len")
    return None


def suite_ppl(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    """Perplexity in windows of the training seq_len (`window_source` says where it came from)."""
    seq_len = training_seq_len(ckpt, cfg.checkpoint)
    res = ppl.run_ppl(ckpt.model, ckpt.tokenizer, path=ppl.resolve_lang_data(cfg.lang_data),
                      max_tokens=cfg.ppl_tokens, window=seq_len)
    res["window_source"] = "training seq_len" if seq_len else "max_seq_len (training seq_len not recorded)"
    return res


def suite_selftest(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    return selftest.run_selftest(ckpt, path=cfg.checkpoint, seed=cfg.seed)


def skip_reason(name: str, cfg: EvalConfig) -> str | None:
    """Why `all` leaves suite `name` out, or None when it applies."""
    if name == "custom":
        if name not in SUITES:
            return "custom suite is not installed"
        return None if cfg.data else "custom needs --data; skipped"
    if name == "ppl":
        try:
            ppl.resolve_lang_data(cfg.lang_data)
        except LooplabError as e:
            return str(e)
    return None


def suite_all(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    """Every applicable suite, selftest first (before anything could disturb the model)."""
    order = ["selftest", "algorithmic", "longctx", "ppl", "custom"]
    order += [n for n in SUITES if n not in order and n != "all"]
    out: dict[str, Any] = {"skipped": {}, "suite_seconds": {}}
    for name in order:
        reason = skip_reason(name, cfg)
        if reason:
            out["skipped"][name] = reason
            continue
        t0 = time.perf_counter()
        out[name] = SUITES[name](ckpt, cfg)
        out["suite_seconds"][name] = time.perf_counter() - t0
    return out


SUITES: dict[str, Callable[[Checkpoint, EvalConfig], dict[str, Any]]] = {
    "algorithmic": suite_algorithmic,
    "longctx": suite_longctx,
    "ppl": suite_ppl,
    "selftest": suite_selftest,
    "custom": suite_custom,
    "all": suite_all,
}


def settings(cfg: EvalConfig) -> dict[str, Any]:
    """The knobs of every suite, recorded whichever suite ran."""
    return {"needle_lengths": list(cfg.needle_lengths), "needle_depths": list(cfg.needle_depths),
            "needle_trials": cfg.needle_trials, "lang_data": cfg.lang_data, "ppl_tokens": cfg.ppl_tokens,
            "tasks": list(cfg.tasks)}


def evaluate_checkpoint(path: str, cfg: EvalConfig, *, out_dir: str | None = None, device: str = "cpu",
                        threads: int = 0) -> tuple[Path, dict[str, Any]]:
    if cfg.suite not in SUITES:
        raise LooplabError(f"suite '{cfg.suite}' is not available yet; available: {', '.join(SUITES)}")
    cfg = dataclasses.replace(cfg, checkpoint=str(path))
    dev = resolve_device(device)
    if dev.type == "cpu":
        set_threads(threads)
    ckpt = load_checkpoint(path, map_location=dev)
    if get_spec(ckpt.config.variant).scored_by_probe:
        raise LooplabError(f"'{path}' is an {ckpt.config.variant} checkpoint; the suites score next-token models, "
                           "use looplab probe")
    out = Path(out_dir) if out_dir else Path(path).parent / "eval_results"
    check_writable(out)
    t0 = time.perf_counter()
    results = SUITES[cfg.suite](ckpt, cfg)  # refuses bad suite input before anything is written
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LooplabError(f"--out_dir {out} is not writable ({e.strerror})") from None
    grid = results.get("algorithmic", {}) if cfg.suite == "all" else results
    outputs = grid.pop("outputs", None)  # every example the grid decoded, kept beside the results
    test_set = grid.pop("test_set", None)  # what the grid was scored on, recorded with the metadata
    if test_set and cfg.test_sets:
        test_set["source"] = os.path.relpath(cfg.test_sets, out)  # a ladder directory stays movable
    if outputs is not None:
        grid["outputs_file"] = f"outputs_{cfg.suite}.jsonl"
        write_outputs(out / grid["outputs_file"], outputs)
    doc = {
        "schema": SCHEMA,
        "suite": cfg.suite,
        "metadata": {
            **provenance(),
            "seed": cfg.seed,
            "decoding": {"strategy": "greedy", "max_new_tokens": cfg.max_new_tokens, "use_cache": cfg.use_cache,
                         "batch_size": cfg.batch_size, "stop": "eos", "n_loops": list(cfg.n_loops)},
            "grid_version": algorithmic.GRID_VERSION,
            "suite_versions": VERSIONS,
            "samples_per_cell": cfg.samples,
            **({"test_set": test_set} if test_set else {}),
            "settings": settings(cfg),
            "model_config": ckpt.config.to_dict(),
            "tokenizer": {"name": ckpt.tokenizer.name, "vocab_size": ckpt.tokenizer.vocab_size,
                          "fingerprint": ckpt.tokenizer.fingerprint},
            "checkpoint": {"path": os.path.relpath(path, out), "sha256": file_sha256(path), "weights_digest": ckpt.digest,
                           "trained_tokens": ckpt.meta.get("tokens")},
            "device": str(dev),
            "wall_seconds": time.perf_counter() - t0,
        },
        "results": results,
    }
    target = out / f"results_{cfg.suite}.json"
    write_json(target, doc)
    return target, doc


def check_writable(out: Path) -> None:
    """Refuse an output directory that cannot be written, before the suites run and without creating it
    (bad input must leave nothing behind)."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise LooplabError(f"--out_dir {out} is not writable ({existing or out} is not a writable directory)")


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def summary_lines(suite: str, res: dict[str, Any]) -> list[str]:
    """One human line per suite for the command line."""
    if suite == "all":
        lines = [line for name in SUITES if name in res for line in summary_lines(name, res[name])]
        return lines + [f"skipped {k}: {v}" for k, v in res["skipped"].items()]
    if suite == "algorithmic":
        lines = [f"algorithmic: iid acc {_pct(res['iid_acc'])}, ood acc {_pct(res['ood_acc'])}"]
        lines += [f"  n_loops {n}: iid acc {_pct(g['iid_acc'])}, ood acc {_pct(g['ood_acc'])}"
                  for n, g in res.get("loops", {}).items()]
        return lines + ([f"  note: {res['loops_note']}"] if "loops_note" in res else [])
    if suite == "longctx":
        by = ", ".join(f"{n}: {_pct(a)}" for n, a in res["by_length"].items())
        return [f"longctx: needle acc by length {by or 'n/a'}"] + [f"  skipped {n}: {w}" for n, w in res["skipped"].items()]
    if suite == "ppl":
        return [f"ppl: {res['ppl']:.2f} ({res['bits_per_byte']:.3f} bits/byte over {res['tokens']:,} tokens)"]
    if suite == "selftest":
        return [f"selftest: {res['passed']}/{res['passed'] + res['failed']} checks pass"] + [
            f"  FAIL {k}: {c['detail']}" for k, c in res["checks"].items() if not c["pass"]]
    return [f"{suite}: done"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
