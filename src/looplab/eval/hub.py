"""eval_hub: load a checkpoint, run a suite, write `results_<suite>.json` with full metadata.

Suites are a plain registry from name to runner; suites that later issues add are listed in
SUITE_NAMES so that asking for one gives a clear error until it exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from looplab.config import EvalConfig
from looplab.errors import LooplabError
from looplab.eval.algorithmic import GRID_VERSION, loop_sweep, run_grid
from looplab.meta import file_sha256, provenance
from looplab.train.checkpoint import Checkpoint, load_checkpoint
from looplab.train.runtime import resolve_device, set_threads

SCHEMA = "looplab-results-v1"
SUITE_NAMES = ("algorithmic", "longctx", "ppl", "selftest", "custom", "all")


def suite_algorithmic(ckpt: Checkpoint, cfg: EvalConfig) -> dict[str, Any]:
    """The grid at the trained loop count; with `n_loops`, also `results["loops"][str(n)]`, the same
    grid at each loop count (looped variants; others get an empty sweep and `loops_note`)."""
    tasks = list(cfg.tasks) or ckpt.meta.get("tasks") or None
    grid = dict(samples=cfg.samples, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size, use_cache=cfg.use_cache)
    results = run_grid(ckpt.model, ckpt.tokenizer, tasks, **grid)
    if cfg.n_loops:
        results.update(loop_sweep(ckpt.model, ckpt.tokenizer, tasks, cfg.n_loops, **grid))
    return results


SUITES: dict[str, Callable[[Checkpoint, EvalConfig], dict[str, Any]]] = {
    "algorithmic": suite_algorithmic,
}


def evaluate_checkpoint(path: str, cfg: EvalConfig, *, out_dir: str | None = None, device: str = "cpu",
                        threads: int = 0) -> tuple[Path, dict[str, Any]]:
    if cfg.suite not in SUITES:
        raise LooplabError(f"suite '{cfg.suite}' is not available yet; available: {', '.join(SUITES)}")
    dev = resolve_device(device)
    if dev.type == "cpu":
        set_threads(threads)
    ckpt = load_checkpoint(path, map_location=dev)
    out = Path(out_dir) if out_dir else Path(path).parent / "eval_results"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LooplabError(f"--out_dir {out} is not writable ({e.strerror})") from None
    t0 = time.perf_counter()
    results = SUITES[cfg.suite](ckpt, cfg)
    doc = {
        "schema": SCHEMA,
        "suite": cfg.suite,
        "metadata": {
            **provenance(),
            "seed": cfg.seed,
            "decoding": {"strategy": "greedy", "max_new_tokens": cfg.max_new_tokens, "use_cache": cfg.use_cache,
                         "batch_size": cfg.batch_size, "stop": "eos", "n_loops": list(cfg.n_loops)},
            "grid_version": GRID_VERSION,
            "samples_per_cell": cfg.samples,
            "model_config": ckpt.config.to_dict(),
            "tokenizer": {"name": ckpt.tokenizer.name, "vocab_size": ckpt.tokenizer.vocab_size,
                          "fingerprint": ckpt.tokenizer.fingerprint},
            "checkpoint": {"path": str(path), "sha256": file_sha256(path), "weights_digest": ckpt.digest,
                           "trained_tokens": ckpt.meta.get("tokens")},
            "device": str(dev),
            "wall_seconds": time.perf_counter() - t0,
        },
        "results": results,
    }
    from looplab.train.trainer import write_json

    target = out / f"results_{cfg.suite}.json"
    write_json(target, doc)
    return target, doc
