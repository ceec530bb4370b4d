"""Where a CPU training step's time goes (issue 10: profile before optimising).

    python bench/profile_cpu.py                 # baseline, latent, act at tiny; AdamW implementations

Prints, per variant, the share of self CPU time of the top operators (torch.profiler over three
steps after two warm-up steps, batch 16 x 256, fp32, 2 threads), the time in attention against
matrix products, and the step time of AdamW's default, foreach and fused implementations (interleaved,
best of five), and causal attention at tiny's shape through three kernels. Figures and what they imply are in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import common  # noqa: F401  (import path)
import torch
import torch.nn.functional as F
from bench_train import SEQ_LEN, V, step_fn
from bench_variants import interleaved
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from looplab.models import create_model

BATCH = 16
ATTENTION = "scaled_dot_product"


def profile_variant(variant: str) -> None:
    torch.manual_seed(0)
    model = create_model(variant, "tiny", V)
    step = step_fn(model, BATCH, hf=False)
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    share = {e.key: e.self_cpu_time_total / total for e in rows}
    attention = sum(v for k, v in share.items() if ATTENTION in k)
    print(f"{variant}: step {total / 3e3:.0f} ms self CPU; matmul (mm, bmm) {share.get('aten::mm', 0) + share.get('aten::bmm', 0):.0%}"
          f", attention {attention:.0%}; FLOPs/token {model.cost(SEQ_LEN)['flops_per_token']:,}")
    for e in rows[:6]:
        print(f"    {e.key[:60]:60s} {share[e.key]:6.1%}  calls/step {e.count // 3}")


def attention_kernels(shape: tuple[int, int, int, int] = (BATCH, 4, SEQ_LEN, 28)) -> None:
    """Causal attention forward + backward at tiny's shape (B, H, T, D): flash, SDPA's math path, and
    plain matrix products with a mask (what a hand-written thought attention would be)."""
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    mask = torch.ones(shape[2], shape[2], dtype=torch.bool).tril()

    def manual() -> torch.Tensor:
        s = (q @ k.transpose(-1, -2)) * shape[3] ** -0.5
        return s.masked_fill(~mask, float("-inf")).softmax(-1) @ v

    def math() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    kernels = {"flash": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), "math": math,
               "manual": manual}
    best = interleaved({name: (lambda f=f: f().sum().backward()) for name, f in kernels.items()})
    print(f"causal attention {shape} fwd+bwd: " + ", ".join(f"{n} {t * 1e3:.1f} ms" for n, t in best.items()))


def main() -> None:
    torch.set_num_threads(2)
    for variant in ("baseline", "latent", "act"):
        profile_variant(variant)
    torch.manual_seed(0)
    model = create_model("baseline", "tiny", V)
    steps = {name: step_fn(model, BATCH, hf=False, **kw)
             for name, kw in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True}))}
    best = interleaved(steps)
    print("AdamW implementations (baseline tiny step): " + ", ".join(
        f"{name} {t * 1e3:.0f} ms ({best['default'] / t:.3f}x)" for name, t in best.items()))
    attention_kernels()


if __name__ == "__main__":
    main()
