"""The selftest suite: is evaluation itself sound on this checkpoint? One pass/fail per check.

- tokenizer_round_trip: decode(encode(text)) == text for task prompts and plain prose;
- solvers: every task's generator agrees with its independent solver at every grid length;
- decoding_determinism: the same prompts decoded twice give the same tokens;
- cached_equals_recomputation: batched cached greedy equals the one-prompt full-recomputation reference;
- checkpoint_integrity: the weights in memory hash to the digest stored in the file, and the file
  on disk still verifies and holds that digest.

A failing check is a result, not an error: the suite always completes and says what failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from looplab.checkpoint import Checkpoint
from looplab.data.packing import encode_example
from looplab.data.tasks import TASKS
from looplab.errors import LooplabError
from looplab.eval.algorithmic import cell_rng
from looplab.eval.decode import greedy, greedy_reference
from looplab.io import read_payload, weights_digest

GRID_VERSION = "selftest-v1"
PROSE = ("Once upon a time, a little dog named Spot found a red ball.", "The sky is blue; 2 + 2 = 4!")


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"pass": bool(ok), "detail": detail}


def _sample_pairs(seed: int, per_task: int = 2) -> list[tuple[str, str]]:
    pairs = []
    for task in TASKS.values():
        pairs += task.generate(cell_rng(seed, task.name, task.iid_lengths[0]), per_task, task.iid_lengths[0]).texts()
    return pairs


def check_tokenizer(tokenizer: Any, seed: int) -> dict[str, Any]:
    texts = [t for pair in _sample_pairs(seed, 1) for t in pair] + list(PROSE)
    bad = [t for t in texts if tokenizer.decode(tokenizer.encode(t)) != t]
    return _check(not bad, f"{len(texts) - len(bad)}/{len(texts)} texts round-trip"
                  + (f"; first failure {bad[0][:40]!r}" if bad else ""))


def check_solvers(seed: int, samples: int = 20) -> dict[str, Any]:
    bad = []
    for task in TASKS.values():
        for n in (*task.iid_lengths, *task.ood_lengths):
            pairs = task.generate(cell_rng(seed, task.name, n), samples, n).texts()
            if any(task.solve(p) != t for p, t in pairs):
                bad.append(f"{task.name}@{n}")
    return _check(not bad, f"{len(TASKS)} tasks agree at every grid length" if not bad
                  else f"generator and solver disagree at {', '.join(bad)}")


def _prompts(tokenizer: Any, seed: int) -> list[list[int]]:
    return [encode_example(tokenizer, p, t)[0] for p, t in _sample_pairs(seed, 1)[:8]]


def check_determinism(model: nn.Module, tokenizer: Any, seed: int, max_new_tokens: int) -> dict[str, Any]:
    prompts = _prompts(tokenizer, seed)
    kw = dict(max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id, batch_size=4)
    first, second = greedy(model, prompts, **kw), greedy(model, prompts, **kw)
    same = sum(a == b for a, b in zip(first, second))
    return _check(same == len(prompts), f"{same}/{len(prompts)} prompts decode identically twice")


def check_cache(model: nn.Module, tokenizer: Any, seed: int, max_new_tokens: int) -> dict[str, Any]:
    prompts = _prompts(tokenizer, seed)
    cached = greedy(model, prompts, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id, batch_size=4)
    ref = greedy_reference(model, prompts, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_id)
    same = sum(a == b for a, b in zip(cached, ref))
    kind = "cached" if model.new_state(1, 8) is not None else "recomputed (no decoding state)"
    return _check(same == len(prompts), f"{kind} equals reference on {same}/{len(prompts)} prompts")


def check_integrity(ckpt: Checkpoint, path: str) -> dict[str, Any]:
    live = weights_digest({k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()})
    if live != ckpt.digest:
        return _check(False, "weights in memory no longer match the checkpoint's digest")
    if not path:
        return _check(True, "weights match the stored digest (file not re-read: no path)")
    try:
        on_disk = read_payload(path)["digest"]
    except LooplabError as e:
        return _check(False, str(e))
    if on_disk != ckpt.digest:
        return _check(False, f"'{path}' changed since it was loaded (digest {on_disk[:12]} != {ckpt.digest[:12]})")
    return _check(True, f"weights and file verify against digest {ckpt.digest[:12]}")


def run_selftest(ckpt: Checkpoint, *, path: str, seed: int, max_new_tokens: int = 8) -> dict[str, Any]:
    checks = {
        "tokenizer_round_trip": check_tokenizer(ckpt.tokenizer, seed),
        "solvers": check_solvers(seed),
        "decoding_determinism": check_determinism(ckpt.model, ckpt.tokenizer, seed, max_new_tokens),
        "cached_equals_recomputation": check_cache(ckpt.model, ckpt.tokenizer, seed, max_new_tokens),
        "checkpoint_integrity": check_integrity(ckpt, path),
    }
    passed = int(np.sum([c["pass"] for c in checks.values()]))
    return {"checks": checks, "passed": passed, "failed": len(checks) - passed, "all_pass": passed == len(checks)}
