"""Measure an `--to hf` export against its checkpoint: logits difference and greedy tokens (fp32, CPU).

    python -m looplab.interop.check CHECKPOINT HF_DIR

Needs transformers; runs offline (HF_HUB_OFFLINE=1 is set before transformers is imported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from looplab.eval.decode import greedy

PROMPTS = ("copy: hello world =", "successor: 41 =", "The quick brown fox jumps over the lazy dog. " * 4)


@torch.no_grad()
def compare(checkpoint: str, hf_dir: str, prompts: Sequence[str] = PROMPTS, max_new_tokens: int = 32) -> dict[str, Any]:
    """Max abs and relative logits difference, and whether tokenization and greedy tokens agree."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from looplab.interop import load_any

    ours = load_any(checkpoint)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    eos = ours.tokenizer.eos_id
    out = {"prompts": len(prompts), "max_abs": 0.0, "max_rel": 0.0, "same_ids": True, "same_greedy": True}
    for text in prompts:
        ids = ours.tokenizer.encode(text)
        out["same_ids"] &= hf_tok.encode(text, add_special_tokens=False) == ids
        x = torch.tensor([ids])  # (1, T)
        a, b = hf(x).logits, ours.model(x).logits  # (1, T, V)
        diff = (a - b).abs().max().item()
        out["max_abs"] = max(out["max_abs"], diff)
        out["max_rel"] = max(out["max_rel"], diff / b.abs().max().item())
        row = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                          do_sample=False)[0, len(ids):].tolist()
        row = row[: row.index(eos) + 1] if eos in row else row
        out["same_greedy"] &= row == greedy(ours.model, [ids], max_new_tokens=max_new_tokens, eos_id=eos)[0]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m looplab.interop.check CHECKPOINT HF_DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    r = compare(*args)
    print(f"prompts {r['prompts']}  max|dlogits| {r['max_abs']:.3e}  max|dlogits|/max|logits| {r['max_rel']:.3e}  "
          f"same token ids: {r['same_ids']}  same greedy tokens: {r['same_greedy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
