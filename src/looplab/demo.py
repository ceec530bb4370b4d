"""`make demo`: the embedded default job, sized for a 2-core CPU.

Trains a `tiny` baseline on a few algorithmic tasks, evaluates it in and out of distribution with
eval_hub, and prints where everything went. (The ladder issue turns this into the full study.)
"""

from __future__ import annotations

import time
from pathlib import Path

from looplab.cli import eval_main, train_main
from looplab.errors import LooplabError

DEMO_TASKS = ("copy", "successor", "reverse", "compare")
DEMO_TOKENS = 1_500_000  # about 2.5 minutes at ~10k tokens/s on 2 cores


def demo(out: str) -> None:
    run = Path(out) / "baseline_tiny"
    t0 = time.perf_counter()
    args = ["--variant", "baseline", "--model_size", "tiny", "--alg_tokens", str(DEMO_TOKENS),
            "--alg_tasks", *DEMO_TASKS, "--seq_len", "64", "--batch_size", "16", "--output_dir", str(run), "--overwrite", "--max_minutes", "4"]
    if train_main(args) != 0:
        raise LooplabError("demo training failed (see the message above)")
    if eval_main(["--checkpoint", str(run / "best_model.pt"), "--suite", "algorithmic",
                  "--out_dir", str(run / "eval_results")]) != 0:
        raise LooplabError("demo evaluation failed (see the message above)")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s. Artefacts:")
    for name in ("summary.json", "metrics.json", "config.json", "loss.png", "accuracy.png", "best_model.pt",
                 "eval_results/results_algorithmic.json"):
        print(f"  {run / name}")
