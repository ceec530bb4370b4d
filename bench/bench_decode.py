"""Cached batched greedy decoding against naive recomputation and against `transformers` generate.

Measured on a `micro` baseline: 64 prompts of 48 tokens, 32 new tokens each (EOS disabled so every
row generates the full 32); against transformers also one prompt alone (batch 1), where per-step
overhead rather than matrix products sets the pace. The transformers baseline is LlamaForCausalLM holding the very same
weights (`looplab.eval.hf_twin`), decoding greedily with its own KV cache; its tokens are checked
equal to ours before timing. Skipped with a note when transformers is not installed.
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (import path)
import torch
from common import best_of, figure

from looplab.eval.decode import greedy
from looplab.models import create_model

N_PROMPTS, PROMPT_LEN, NEW = 64, 48, 32


def transformers_line(model: torch.nn.Module, twin: torch.nn.Module, prompts: list[list[int]], label: str) -> None:
    """Our cached greedy against transformers' generate on the same prompts, same weights."""
    idx = torch.tensor(prompts)  # (B, T)
    kw = dict(attention_mask=torch.ones_like(idx), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
              eos_token_id=None, pad_token_id=0)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return twin.generate(idx, **kw)

    def ours() -> list[list[int]]:
        return greedy(model, prompts, max_new_tokens=NEW, eos_id=-1, batch_size=len(prompts))

    assert run()[:, PROMPT_LEN:].tolist() == ours(), "transformers and looplab disagree on greedy tokens"
    hf, cached = best_of(run), best_of(ours)
    n = len(prompts) * NEW
    print(f"{label}: looplab cached {n / cached:,.0f} tok/s; transformers generate {n / hf:,.0f} tok/s")
    figure(f"decode_cached_vs_transformers_generate_speedup_{label}", hf / cached, ">=", 1.5, "x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (1 on a busy shared machine)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = create_model("baseline", "micro", 260).eval()
    prompts = torch.randint(0, 256, (N_PROMPTS, PROMPT_LEN)).tolist()

    def run(use_cache: bool) -> None:
        greedy(model, prompts, max_new_tokens=NEW, eos_id=-1, batch_size=N_PROMPTS, use_cache=use_cache)

    cached = best_of(lambda: run(True))
    naive = best_of(lambda: run(False), repeats=2)
    print(f"decode cached: {N_PROMPTS * NEW / cached:,.0f} tok/s; naive recomputation: "
          f"{N_PROMPTS * NEW / naive:,.0f} tok/s")
    figure("decode_cached_vs_naive_speedup", naive / cached, ">=", 3.0, "x")
    try:
        from looplab.eval.hf_twin import llama_twin

        twin = llama_twin(model)
    except Exception as e:  # transformers missing or incompatible: the figures above still stand
        print(f"transformers generate: skipped ({type(e).__name__}: {str(e)[:80]})")
        return
    transformers_line(model, twin, prompts, f"batch{N_PROMPTS}")
    transformers_line(model, twin, prompts[:1], "batch1")


if __name__ == "__main__":
    main()
