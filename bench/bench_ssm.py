"""The Mamba-2 scans against each other and against references measured in the same run.

CPU (always), at a `micro`-width mixer's shape (d_model 256: 16 heads of 32, d_state 32, chunk 64),
batch 2, 1024 tokens:
- the scan alone: chunked SSD against the sequential reference, forward (target >= 5x), and against
  the pure PyTorch chunked scan of `transformers` (`mamba2_chunk_scan`), forward and forward +
  backward (target >= 1x; skipped without `transformers`);
- the whole mixer (projections, convolution, scan, gated norm) against `transformers`' Mamba2Mixer
  holding the same weights, forward and forward + backward (target >= 1x);
- `ssm` training tokens/s against `baseline` at the same width and depth (`micro`, batch 8 x 256,
  forward + backward + AdamW step; informational).
GPU (only with CUDA): the mamba_ssm kernel path against the chunked fallback, and `ssm` against
`baseline` training throughput at 2k and 8k tokens (`nano`, bf16 autocast).

Each pair is timed alternately, A B A B ..., keeping the fastest of each, so that a burst of load
from another process on a shared machine hits both sides alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import common  # noqa: F401  (import path)
import torch
import torch.nn.functional as F
from common import best_of, figure

from looplab.models import create_model
from looplab.models.mamba2 import Mamba2, Mamba2Options, mamba_kernels, ssd_chunked, ssd_sequential

V = 260


def paired(fa: Callable[[], object], fb: Callable[[], object], rounds: int = 3) -> tuple[float, float]:
    """Fastest wall time of each of two functions, timed alternately (one warm-up call each)."""
    ta, tb = [], []
    for i in range(rounds):
        ta.append(best_of(fa, repeats=1, warmup=int(i == 0)))
        tb.append(best_of(fb, repeats=1, warmup=int(i == 0)))
    return min(ta), min(tb)


def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return fn()
    return run


def backward(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        fn().square().mean().backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return run


def mixer(impl: str, device: str = "cpu", d_model: int = 256) -> Mamba2:
    torch.manual_seed(0)
    m = Mamba2(d_model, Mamba2Options(ssm_impl=impl))
    m.init_weights(out_std=0.02)
    return m.to(device)


def transformers_mixer(ours: Mamba2) -> torch.nn.Module | None:
    """transformers' Mamba2Mixer holding our mixer's weights, or None when transformers is absent."""
    try:
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    except ImportError:
        return None
    o, d = ours.opts, ours.out_proj.out_features
    cfg = Mamba2Config(hidden_size=d, num_heads=ours.n_head, head_dim=o.head_dim, state_size=o.d_state,
                       n_groups=o.n_groups, expand=o.expand, conv_kernel=o.d_conv, chunk_size=o.chunk,
                       num_hidden_layers=1, vocab_size=V)
    theirs = Mamba2Mixer(cfg, layer_idx=0)
    names = {"conv1d.weight": "conv.weight", "conv1d.bias": "conv.bias"}
    theirs.load_state_dict({k: ours.get_parameter(names.get(k, k)).detach().clone()
                            for k in theirs.state_dict()})
    return theirs


def train_step(variant: str, size: str, batch: int, seq_len: int, device: str, amp: bool) -> Callable[[], None]:
    """One forward + backward + AdamW step of `variant` at `size`, as a closure."""
    torch.manual_seed(0)
    model = create_model(variant, size, V, max_seq_len=seq_len).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, V, (batch, seq_len + 1), device=device)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = model(x[:, :-1], x[:, 1:]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def versus_baseline(size: str, batch: int, seq_len: int, device: str = "cpu", amp: bool = False) -> None:
    t_ssm, t_base = paired(train_step("ssm", size, batch, seq_len, device, amp),
                           train_step("baseline", size, batch, seq_len, device, amp))
    tokens = batch * seq_len
    print(f"{device} {size} training, {batch} x {seq_len} tokens: ssm {tokens / t_ssm:,.0f} tok/s, "
          f"baseline {tokens / t_base:,.0f} tok/s")
    print(f"{device}_ssm_vs_baseline_train_tokens_per_s_{size}_T{seq_len}: {t_base / t_ssm:.3f}x (informational)")


def scan_section(b: int, t: int, heads: int, head_dim: int, d_state: int, chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, t, heads, head_dim, generator=gen)
    dt_raw = torch.randn(b, t, heads, generator=gen) - 2
    B, C = torch.randn(b, t, 1, d_state, generator=gen), torch.randn(b, t, 1, d_state, generator=gen)
    A, D, dt_bias = -torch.linspace(1, 16, heads), torch.ones(heads), torch.zeros(heads)

    def ours(scan: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            return scan(x, F.softplus(dt_raw + dt_bias), A, B, C)[0] + x * D[:, None]
        return run

    chunked = ours(lambda *a: ssd_chunked(*a, chunk))
    t_chunked, t_seq = paired(no_grad(chunked), no_grad(ours(ssd_sequential)))
    print(f"SSD scan forward, {b} x {t} tokens: chunked {t_chunked * 1e3:.1f} ms, sequential {t_seq * 1e3:.1f} ms")
    figure(f"ssd_chunked_vs_sequential_speedup_T{t}", t_seq / t_chunked, ">=", 5.0, "x")

    try:
        from transformers.models.mamba2.modeling_mamba2 import mamba2_chunk_scan
    except ImportError:
        print("transformers (with mamba2_chunk_scan) not installed: scan comparison skipped")
        return

    def theirs() -> torch.Tensor:
        return mamba2_chunk_scan(x, dt_raw, A, B, C, chunk, D=D, dt_bias=dt_bias, dt_softplus=True)

    t_ours, t_theirs = paired(no_grad(chunked), no_grad(theirs))
    print(f"scan forward: chunked {t_ours * 1e3:.1f} ms, transformers mamba2_chunk_scan {t_theirs * 1e3:.1f} ms")
    figure(f"ssd_chunked_vs_transformers_scan_forward_T{t}", t_theirs / t_ours, ">=", 1.0, "x")
    for v in (x, dt_raw, B, C):
        v.requires_grad_(True)
    t_ours, t_theirs = paired(backward(chunked), backward(theirs))
    print(f"scan forward + backward: chunked {t_ours * 1e3:.1f} ms, transformers {t_theirs * 1e3:.1f} ms")
    figure(f"ssd_chunked_vs_transformers_scan_train_T{t}", t_theirs / t_ours, ">=", 1.0, "x")


def mixer_section(u: torch.Tensor) -> None:
    ours = mixer("chunked", d_model=u.shape[-1])
    theirs = transformers_mixer(ours)
    if theirs is None:
        print("transformers not installed: mixer comparison skipped")
        return
    t_ours, t_theirs = paired(no_grad(lambda: ours(u)), no_grad(lambda: theirs(u)))
    print(f"mixer forward, {u.shape[0]} x {u.shape[1]} tokens: ours {t_ours * 1e3:.1f} ms, "
          f"transformers Mamba2Mixer {t_theirs * 1e3:.1f} ms")
    figure(f"mixer_vs_transformers_forward_T{u.shape[1]}", t_theirs / t_ours, ">=", 1.0, "x")
    t_ours, t_theirs = paired(backward(lambda: ours(u)), backward(lambda: theirs(u)))
    print(f"mixer forward + backward: ours {t_ours * 1e3:.1f} ms, transformers {t_theirs * 1e3:.1f} ms")
    figure(f"mixer_vs_transformers_train_T{u.shape[1]}", t_theirs / t_ours, ">=", 1.0, "x")


def gpu_section() -> None:
    u = torch.randn(4, 2048, 512, device="cuda")
    if mamba_kernels() is None:
        print("cuda: mamba_ssm not importable, kernel path skipped")
    else:
        kernel, fallback = mixer("auto", "cuda", 512), mixer("chunked", "cuda", 512)
        t_k, t_fb = paired(backward(lambda: kernel(u)), backward(lambda: fallback(u)))
        print(f"cuda mixer forward + backward, 4 x 2048: kernel {t_k * 1e3:.2f} ms, chunked {t_fb * 1e3:.2f} ms")
        figure("cuda_kernel_vs_chunked_train_T2048", t_fb / t_k, ">=", 1.0, "x")
    for seq_len, batch in ((2048, 8), (8192, 2)):
        versus_baseline("nano", batch, seq_len, "cuda", amp=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (this machine has 2 cores)")
    torch.set_num_threads(parser.parse_args().threads)
    scan_section(2, 1024, heads=16, head_dim=32, d_state=32, chunk=64)
    mixer_section(torch.randn(2, 1024, 256))
    versus_baseline("micro", 8, 256)
    if torch.cuda.is_available():
        gpu_section()


if __name__ == "__main__":
    main()
