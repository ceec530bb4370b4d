"""Where a model's answers go wrong: teacher-forced accuracy at each answer position, by problem length.

    .venv/bin/python scripts/per_position.py runs/repro_coupling/runs/baseline_coupled_s0/best_model.pt \
        --task addition_rev --lengths 4 5 6 8

For each checkpoint and length: problems of one answer length (the most common one at that length),
each fed whole (prompt and reference answer), and the share of problems whose next token the model
predicts right at every answer position, the stop token last. A length-generalisation failure then
shows where it sits: at the first digits, the last ones, or the stop.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from looplab.checkpoint import load_model  # noqa: E402
from looplab.data.packing import encode_example  # noqa: E402
from looplab.data.tasks import TASKS  # noqa: E402
from looplab.errors import LooplabError  # noqa: E402
from looplab.eval.decode import rows_batch  # noqa: E402


@torch.no_grad()
def per_position(model: torch.nn.Module, tokenizer: object, task: str, length: int, n: int = 500,
                 seed: int = 7) -> tuple[int, list[float]]:
    """(answer tokens incl. the stop, accuracy at each of them) on up to n problems of `length`."""
    examples = TASKS[task].generate(np.random.default_rng(seed), n, length).texts()
    rows = [encode_example(tokenizer, p, t) for p, t in examples]
    prompt, width = Counter((len(c), len(a)) for c, a in rows).most_common(1)[0][0]
    idx = torch.tensor([c + a for c, a in rows if (len(c), len(a)) == (prompt, width)])
    logits = model(rows_batch(model, idx[:, :-1])).logits
    first = prompt - 1  # the column whose prediction is the answer's first token
    right = logits[:, first:].argmax(-1) == idx[:, first + 1:]
    return width, right.float().mean(0).tolist()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--task", default="addition_rev")
    ap.add_argument("--lengths", type=int, nargs="+", default=[4, 5, 6, 8])
    ap.add_argument("--problems", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        if args.task not in TASKS:
            raise LooplabError(f"unknown task '{args.task}'; allowed: {', '.join(TASKS)}")
        for path in args.checkpoints:
            model, tokenizer = load_model(path)
            print(path)
            for length in args.lengths:
                width, acc = per_position(model.eval(), tokenizer, args.task, length, args.problems)
                print(f"  length {length}: {width} answer tokens, the stop last: " + " ".join(f"{a:.2f}" for a in acc))
    except LooplabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
