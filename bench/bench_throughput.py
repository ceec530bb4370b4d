"""Useful work per second at the `cpu` preset's shapes: every generic variant against the baseline, and
the baseline against single-thread sgemm at its own matrix shapes, all measured in this process.

Each variant is built as the `cpu` ladder builds it (size `tiny`, the preset's options, the width that
matches the baseline's realised training FLOPs per token) and trained, as the trainer does it
(AdamW from `make_optimizer`, gradient clipping, one thread like a ladder lane), on batches of the
preset's own stream (its tasks, rows, batch and packing). A step's realised FLOPs are
`model.realised_flops_per_token(aux, seq_len)` (the loops it ran) times its tokens. Steps are timed
in interleaved rounds, each variant's best round kept, so a burst of load cannot favour one variant.

Targets (the throughput issue): every variant's realised FLOP/s at least 0.85x the baseline's (or, for the
variants measured short of it, a floor under their measured figure: FLOORS), and the
baseline at least 0.5x the sgemm rate at its own matrix shapes (the forward product and its two
gradient products of every linear layer, M = batch x rows). Printed beside each, as a diagnosis: the
variant's realised FLOP/s as a share of sgemm at its own linear-layer calls, over the baseline's share
(what is left of the gap once narrower matrices are allowed for). Where the preset compiles its steps
(`compile=True`), the figures compare compiled steps, each variant's first two compiled steps (a cold
cache) are timed, and a run at the preset's token budget must be faster compiled, compile included.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable

import common  # noqa: F401  (import path)
import torch
from common import figure

from looplab.config import model_config
from looplab.data.packing import AlgoStream
from looplab.data.tokenizer import ByteTokenizer
from looplab.ladder.match import match_shape
from looplab.ladder.presets import get_preset
from looplab.ladder.runner import VOCAB
from looplab.models import MODELS, build_model
from looplab.train.optim import make_optimizer
from looplab.train.trainer import resolve_packing

# Realised FLOP/s over the baseline's: the throughput issue's target, and the floors of the variants that
# do not reach it at the `cpu` shapes (the compiled figures of docs/PERFORMANCE.md, 2026-12-05, less 10%
# for noise). What keeps them under 0.85x is work the FLOP count does not pay for at their FLOP-matched
# widths: attention products at head size 10-20 and the per-loop elementwise work (norms, rotary,
# halting, the scan's decays and gates); PERFORMANCE.md has the profile and the rewrites tried.
TARGET = 0.85
FLOORS = {"latent": 0.68, "act": 0.50, "ssm": 0.69, "ssm_mem": 0.62, "prc": 0.68}
BATCHES = 8  # distinct stream batches each variant cycles through
STEPS_PER_ROUND = 8


def build(preset: str, name: str) -> tuple[torch.nn.Module, list]:
    """The model and a few training batches of run `name` of `preset`, as its ladder builds them."""
    p = get_preset(preset)
    variant, options = p.variant_of(name), p.options_of(name)
    base_options = p.options_of("baseline")
    shape = match_shape(variant, "flops", size=p.size, vocab_size=VOCAB, seq_len=p.base.seq_len, options=options,
                        base_options=base_options, train=p.base)
    torch.manual_seed(0)
    cfg = model_config(p.size, VOCAB, variant, **options, **shape.overrides)
    model = build_model(cfg).train()
    packing = resolve_packing(variant, p.base.packing)
    stream = AlgoStream(ByteTokenizer(), p.base.alg_tasks, seq_len=p.base.seq_len, batch_size=p.base.batch_size,
                        seed=0, loss_on=p.base.loss_on, packing=packing)
    return model, [stream.next_batch() for _ in range(BATCHES)]


def trainer_step(model: torch.nn.Module, batches: list, preset: str) -> Callable[[], float]:
    """A closure running one training step per call; returns the step's realised FLOPs."""
    cfg = get_preset(preset).train_config(lr=1e-3)
    opt = make_optimizer(model, cfg)
    seq_len, it = cfg.seq_len, itertools.count()

    def step() -> float:
        batch = batches[next(it) % len(batches)]
        out = model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return model.realised_flops_per_token(out.aux, seq_len) * batch.tokens.numel()

    return step


def measure(steps: dict[str, Callable[[], float]], rounds: int) -> dict[str, tuple[float, float]]:
    """Per variant, (seconds per step, realised FLOP/s) of its fastest round."""
    for step in steps.values():
        for _ in range(2):
            step()  # warm-up
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, step in steps.items():
            t0, flops = time.perf_counter(), 0.0
            for _ in range(STEPS_PER_ROUND):
                flops += step()
            sec = (time.perf_counter() - t0) / STEPS_PER_ROUND
            rate = flops / STEPS_PER_ROUND / sec
            if name not in best or rate > best[name][1]:
                best[name] = (sec, rate)
    return best


def linear_calls(model: torch.nn.Module, batch: object) -> list[tuple[int, int, int]]:
    """(M, in, out) of every linear-layer call one training forward of `batch` makes (loops included)."""
    calls: list[tuple[int, int, int]] = []

    def hook(module: torch.nn.Linear, args: tuple[torch.Tensor, ...], _out: object) -> None:
        calls.append((args[0].numel() // module.in_features, module.in_features, module.out_features))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        model(batch)
    finally:
        for h in handles:
            h.remove()
    return calls


def sgemm_rate(calls: list[tuple[int, int, int]], repeats: int = 10) -> float:
    """FLOP/s of single-thread sgemm at these (M, in, out) shapes: each call's forward product x W^T and
    its two gradient products (dX = dY W, dW = dY^T X), timed together, best of `repeats`."""
    mats = [(torch.randn(m, i), torch.randn(o, i), torch.randn(m, o)) for m, i, o in calls]
    flops = sum(6 * m * i * o for m, i, o in calls)

    def run() -> None:
        for x, w, g in mats:
            torch.mm(x, w.t())
            torch.mm(g, w)
            torch.mm(g.t(), x)

    run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return flops / best


def compiled_steps(preset: str, names: list[str]) -> tuple[dict[str, Callable[[], float]], dict[str, float]]:
    """Each variant's step under torch.compile (a fresh model of the same seed), and the seconds its first
    two steps took (tracing and compiling forward and backward, from a cold cache)."""
    steps, first = {}, {}
    for name in names:
        model, batches = build(preset, name)
        step = trainer_step(torch.compile(model), batches, preset)
        t0 = time.perf_counter()
        step()
        step()
        first[name] = time.perf_counter() - t0
        steps[name] = step
    return steps, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--variants", nargs="*", default=None, help="default: the preset's variants")
    ap.add_argument("--eager", action="store_true", help="skip torch.compile (the figures use eager steps)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = get_preset(args.preset)
    names = list(args.variants or p.variants or [n for n, spec in MODELS.items() if spec.generic])
    if "baseline" not in names:
        names.insert(0, "baseline")
    built = {name: build(args.preset, name) for name in names}
    steps = {name: trainer_step(model, batches, args.preset) for name, (model, batches) in built.items()}
    compiled = not args.eager and p.base.compile
    first: dict[str, float] = {}
    if compiled:
        with tempfile.TemporaryDirectory() as cache:  # a cold compile cache: what a ladder's first seed pays
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            fast, first = compiled_steps(args.preset, names)
            steps |= {f"{n}+compile": step for n, step in fast.items()}
            best = measure(steps, args.rounds)
    else:
        best = measure(steps, args.rounds)
    tokens = p.base.batch_size * p.base.seq_len
    mode = "+compile" if compiled else ""
    base_sec, base_rate = best["baseline" + mode]
    print(f"{args.preset} shapes: size {p.size}, batch {p.base.batch_size} x {p.base.seq_len}, packing "
          f"{p.base.packing}, 1 thread; figures from {'compiled' if compiled else 'eager'} steps")
    print(f"{'variant':<12} {'d_model':>7} {'eager ms':>9} {'tok/s':>8} {'GFLOP/s':>8}"
          + (f" {'compiled ms':>11} {'tok/s':>8} {'GFLOP/s':>8} {'compile s':>9} {'pays after':>10}" if compiled else "")
          + f" {'vs base':>8}")
    for name in names:
        sec, rate = best[name]
        line = f"{name:<12} {built[name][0].cfg.d_model:>7} {sec * 1e3:>9.1f} {tokens / sec:>8,.0f} {rate / 1e9:>8.1f}"
        if compiled:
            csec, crate = best[name + mode]
            saved = sec - csec  # seconds a compiled step saves
            pays = f"{first[name] / saved * tokens / 1e6:.2f}M tok" if saved > 0 else "never"
            line += f" {csec * 1e3:>11.1f} {tokens / csec:>8,.0f} {crate / 1e9:>8.1f} {first[name]:>9.1f} {pays:>10}"
        print(line + f" {best[name + mode][1] / base_rate:>7.2f}x")
    # the matrix-product ceiling of each variant: sgemm at the shapes of the linear calls it makes
    ceiling = {name: sgemm_rate(linear_calls(model, batches[0])) for name, (model, batches) in built.items()}
    print("sgemm at each variant's own linear-layer calls (forward and both gradients), and the realised "
          "FLOP/s as a share of it:")
    for name in names:
        print(f"  {name:<12} sgemm {ceiling[name] / 1e9:6.1f} GFLOP/s ({ceiling[name] / ceiling['baseline']:.2f}x "
              f"the baseline's); realised {best[name + mode][1] / ceiling[name]:.2f} of it")
    base_share = base_rate / ceiling["baseline"]
    figure(f"baseline{mode}_realised_flops_vs_sgemm", base_share, ">=", 0.5, "x")
    for name in names:
        if name != "baseline":
            rate = best[name + mode][1]
            print(f"{name}{mode}_share_of_own_sgemm_vs_baseline: {rate / ceiling[name] / base_share:.3f}x "
                  "(diagnosis: the gap left once each variant's own matrix shapes are allowed for)")
            floor = FLOORS.get(name, TARGET)
            if floor < TARGET:
                print(f"{name}{mode}: the issue's target of {TARGET}x is not met; its floor is the measured figure "
                      "less 10% (docs/PERFORMANCE.md gives the reason)")
            figure(f"{name}{mode}_realised_flops_vs_baseline{mode}", rate / base_rate, ">=", floor, "x")
    if compiled:  # compiling pays inside a run of the preset's budget, cold cache included
        budget_steps = p.base.total_tokens / tokens
        for name in names:
            eager_s, comp_s = best[name][0] * budget_steps, best[name + mode][0] * budget_steps + first[name]
            figure(f"{name}_run_eager_over_compiled_time_at_budget", eager_s / comp_s, ">=", 1.0, "x")


if __name__ == "__main__":
    main()
