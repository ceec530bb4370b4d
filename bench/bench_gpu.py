"""GPU benchmarks (skipped without CUDA): model FLOPs utilisation, looped variants against baseline,
and the Mamba-2 paths (mamba_ssm kernels against the pure PyTorch chunked fallback, ssm against
baseline at 2k and 8k tokens).

Every figure is a ratio against something measured in the same process: MFU is reported both
against the datasheet bf16 dense peak and against a large bf16 matrix product timed here first.
Training steps run as the trainer runs them (bf16 autocast, AdamW, SDPA attention, `torch.compile`
where it compiles); timing uses CUDA events around a window of steps after warm-up, with one
synchronisation at the end of the window, so host syncs inside the step would show up as time.

    python bench/bench_gpu.py                      # every section
    python bench/bench_gpu.py --only mfu ssm       # some sections
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from common import figure  # also puts src/ on the import path

from looplab.config import TrainConfig
from looplab.models import MODELS, create_model
from looplab.models.mamba2 import mamba_kernels
from looplab.train.optim import make_optimizer

VOCAB = 50304  # GPT-2's vocabulary padded to a multiple of 64, as nanoGPT and llm.c measure
DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s


def cuda_time(fn: Callable[[], object], steps: int, warmup: int) -> float:
    """Seconds per call: median of three windows of `steps` calls, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    windows = []
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        torch.cuda.synchronize()
        windows.append(start.elapsed_time(end) / 1e3 / steps)
    return sorted(windows)[1]


def matmul_peak() -> float:
    """bf16 FLOP/s of an 8192^3 product on random data, the ceiling this card reaches today."""
    n = 8192
    a, b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2 * n**3 / cuda_time(lambda: a @ b, steps=20, warmup=5)


def datasheet_peak() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in DATASHEET_BF16.items() if k in name), None)


def train_step_fn(model: torch.nn.Module, batch: int, seq: int, compile_model: bool) -> Callable[[], None]:
    """One optimiser step on random tokens, as the trainer takes it (no host sync inside)."""
    opt = make_optimizer(model, TrainConfig(lr=1e-4))  # fused AdamW on CUDA
    step_model = torch.compile(model) if compile_model else model
    x = torch.randint(0, VOCAB, (batch, seq), device="cuda")
    y = torch.randint(0, VOCAB, (batch, seq), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(x, y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_seconds(variant: str, size: str, batch: int, seq: int, compile_model: bool = True,
                 **overrides: object) -> tuple[float, float, str]:
    """(seconds per step, FLOPs per token, how it ran) for one variant; falls back to eager when
    compilation fails, and says so."""
    torch.manual_seed(0)
    model = create_model(variant, size, VOCAB, max_seq_len=max(seq, 2048), **overrides).cuda()
    flops = float(model.cost(seq)["flops_per_token"])
    mode = "compiled" if compile_model else "eager"
    try:
        secs = cuda_time(train_step_fn(model, batch, seq, compile_model), steps=10, warmup=4)
    except Exception as e:  # noqa: BLE001 - report the failure and measure eager instead
        if not compile_model:
            raise
        print(f"  ({variant}: torch.compile failed: {type(e).__name__}: {str(e)[:120]}; eager instead)")
        torch._dynamo.reset()
        mode = "eager"
        secs = cuda_time(train_step_fn(model, batch, seq, False), steps=10, warmup=2)
    del model
    torch.cuda.empty_cache()
    return secs, flops, mode


def section_mfu(peak: float, sheet: float | None, args: argparse.Namespace) -> None:
    print("-- MFU (bf16 autocast, fused SDPA attention, AdamW, seq 1024)")
    base = {}
    for size, batch, target in [c for c in (("125M", 32, 0.40), ("nano", 64, 0.25)) if c[0] in args.sizes]:
        secs, flops, mode = step_seconds("baseline", size, batch, 1024)
        achieved = flops * batch * 1024 / secs
        base[size] = achieved
        print(f"  baseline {size}: {batch * 1024 / secs:,.0f} tok/s, {achieved / 1e12:.1f} TFLOP/s ({mode})")
        if sheet:
            figure(f"mfu_baseline_{size}_vs_datasheet", achieved / sheet, ">=", target)
        figure(f"mfu_baseline_{size}_vs_measured_matmul", achieved / peak, ">=", target)
    looped = [v for v in MODELS if v not in ("baseline", "ssm", "ssm_mem")]
    for variant in [v for v in looped if not args.variants or v in args.variants]:
        try:
            secs, flops, mode = step_seconds(variant, "nano", 64, 1024)
        except Exception as e:  # noqa: BLE001 - one broken variant must not hide the others' figures
            print(f"mfu_{variant}_nano_over_baseline: error {type(e).__name__}: {str(e)[:200]} FAIL")
            continue
        achieved = flops * 64 * 1024 / secs
        print(f"  {variant} nano: {64 * 1024 / secs:,.0f} tok/s, {achieved / 1e12:.1f} TFLOP/s counted ({mode})")
        figure(f"mfu_{variant}_nano_over_baseline", achieved / base["nano"], ">=", 0.9)


def section_ssm(peak: float, sheet: float | None, args: argparse.Namespace) -> None:
    kernels = mamba_kernels()
    print(f"-- Mamba-2 paths (mamba_ssm kernels importable: {kernels is not None}; "
          f"causal_conv1d: {kernels is not None and kernels.conv is not None})")
    for seq, batch in [c for c in ((2048, 16), (8192, 4)) if c[0] in args.seqs]:
        base, _, bmode = step_seconds("baseline", "nano", batch, seq)
        chunked, _, cmode = step_seconds("ssm", "nano", batch, seq, ssm_impl="chunked")
        print(f"  seq {seq} batch {batch}: baseline {base * 1e3:.1f} ms ({bmode}), "
              f"ssm chunked {chunked * 1e3:.1f} ms ({cmode})")
        info(f"ssm_chunked_speed_over_baseline_T{seq}", base / chunked)
        if kernels is not None:
            kern, _, kmode = step_seconds("ssm", "nano", batch, seq, ssm_impl="auto")
            print(f"  seq {seq}: ssm kernel {kern * 1e3:.1f} ms ({kmode})")
            figure(f"ssm_kernel_speed_over_chunked_T{seq}", chunked / kern, ">=", 1.0)
            info(f"ssm_kernel_speed_over_baseline_T{seq}", base / kern)


def section_ssm_parity(peak: float, sheet: float | None, args: argparse.Namespace) -> None:
    """The kernel path and the chunked path on the same weights, fp32, forward and gradients."""
    if mamba_kernels() is None:
        print("-- Mamba-2 kernel parity: skipped (mamba_ssm not importable)")
        return
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references stay fp32
    torch.manual_seed(0)
    model = create_model("ssm", "micro", 256, ssm_impl="auto").cuda()
    ref = create_model("ssm", "micro", 256, ssm_impl="chunked").cuda()
    ref.load_state_dict(model.state_dict())
    x = torch.randint(0, 256, (2, 1000), device="cuda")
    outs = []
    for m in (model, ref):
        out = m(x, x)
        out.loss.backward()
        outs.append((out.logits.detach(), torch.cat([p.grad.flatten() for p in m.parameters()])))
    rel = [((a - b).norm() / b.norm()).item() for a, b in zip(outs[0], outs[1])]
    print(f"-- Mamba-2 kernel parity (ssm micro, T=1000, fp32): logits rel err {rel[0]:.2e}, grads {rel[1]:.2e}")
    figure("ssm_kernel_parity_logits_relerr", rel[0], "<=", 1e-3)  # tf32 dots inside the Triton kernels
    figure("ssm_kernel_parity_grads_relerr", rel[1], "<=", 1e-2)


def info(name: str, value: float) -> None:
    print(f"{name}: {value:,.3f} (info)", flush=True)


SECTIONS = {"parity": section_ssm_parity, "mfu": section_mfu, "ssm": section_ssm}  # (peak, datasheet, args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    ap.add_argument("--sizes", nargs="*", default=["125M", "nano"], help="baseline sizes for MFU (nano is "
                    "the reference of the looped variants)")
    ap.add_argument("--variants", nargs="*", default=[], help="looped variants for MFU (default: all)")
    ap.add_argument("--seqs", nargs="*", type=int, default=[2048, 8192], help="sequence lengths for the ssm section")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: skipped (no CUDA device); run it on a GPU machine")
        return 0
    sheet = datasheet_peak()
    peak = matmul_peak()
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}; bf16 8192^3 matmul "
          f"{peak / 1e12:.0f} TFLOP/s measured, datasheet {sheet / 1e12 if sheet else float('nan'):.0f}")
    for name in args.only:
        t0 = time.perf_counter()
        SECTIONS[name](peak, sheet, args)
        print(f"   ({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
