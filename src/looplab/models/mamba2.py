"""The Mamba-2 mixer: the SSD layer of Dao & Gu, "Transformers are SSMs", arXiv 2405.21060.

    u -> in_proj -> z, xBC, dt
    xBC -> causal depthwise conv -> SiLU -> x, B, C
    y = SSD(x, softplus(dt + dt_bias), A, B, C) + D x
    out = out_proj(RMSNorm(y * SiLU(z)))            (the norm is taken per group of heads)

SSD is a selective state-space recurrence with A a negative scalar per head (times the identity):

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T        (h: p x n per head)
    y_t = h_t C_t

The transition exp(dt A) lies in (0, 1), and a linear recurrence with only such eigenvalues cannot
track parity at any length (Grazzi et al., arXiv 2411.12537). Option `negative_eigenvalues` uses
2 exp(dt A) - 1 in (-1, 1) instead, as they propose; the scans then carry signs (`log_transition`)
and the mamba_ssm kernels, which know only the original form, are not used.

One set of weights, three ways to run the recurrence over a sequence:
- `ssd_sequential`: token by token, the obviously correct reference. Its step, `ssd_step`, is also
  the constant-memory decoding step.
- `ssd_chunked`: the chunked SSD algorithm in pure PyTorch, the default on the CPU and the GPU
  fallback. Inside a chunk the output is a masked quadratic form (attention-like, with decays);
  across chunks only the p x n states are passed on.
- the `mamba_ssm` kernels (`mamba_chunk_scan_combined`, and `causal_conv1d_fn` when that package is
  installed): used for full-sequence forwards on CUDA when importable and `ssm_impl` is "auto".

Packed examples (`--packing isolated`, data.batch.Segments) are kept apart as Mamba-2's `seq_idx`
does: given each token's example, both scans start every example from the same state (zero, or the
state a cache holds) and the convolution reads no input of another example, so a packed row computes
what each of its examples computes alone. The kernels are then not used.

Decoding carries an `SSMCache`: per mixer the last k-1 convolution inputs and the SSM state. Its
size depends on the batch and the layer shape only, never on how many tokens were read.

Letters: b batch, t tokens, h heads, p head dim, n state size, g groups of heads sharing B and C,
r heads per group, c chunks, l and s positions inside a chunk, e inner width (h * p), d model width,
k convolution width, m mixers in a stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from looplab.data.batch import Segments
from looplab.errors import LooplabError
from looplab.flags import check_settings, setting

SSM_IMPLS = ("auto", "chunked", "sequential")


@dataclass(frozen=True, kw_only=True)
class Mamba2Options:
    expand: int = setting(2, "inner width e = expand * d_model", range=">= 1")
    head_dim: int = setting(32, "channels per SSM head (p); e must be a multiple", range=">= 1")
    d_state: int = setting(32, "state size per head (n)", range=">= 1")
    n_groups: int = setting(1, "groups of heads that share B and C (g); must divide the head count", range=">= 1")
    d_conv: int = setting(4, "width of the causal depthwise convolution (k)", range=">= 2")
    chunk: int = setting(64, "SSD chunk length (l)", range=">= 1")
    ssm_impl: str = setting("auto", "auto: mamba_ssm kernels on CUDA when importable, else chunked; or chunked, "
                            "sequential", choices=SSM_IMPLS)
    negative_eigenvalues: bool = setting(False, "transition 2 exp(dt A) - 1 in (-1, 1) instead of exp(dt A) in (0, 1)")

    def __post_init__(self) -> None:
        check_settings(self)


def _import_kernels() -> SimpleNamespace | None:
    """The one import guard: mamba_ssm's chunked scan, plus causal_conv1d when present; None without.
    Both kernels are wrapped so that `torch.compile` calls them as they are instead of tracing them."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError:
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except ImportError:
        causal_conv1d_fn = None
    conv = torch.compiler.disable(causal_conv1d_fn) if causal_conv1d_fn is not None else None
    return SimpleNamespace(chunk_scan=torch.compiler.disable(mamba_chunk_scan_combined), conv=conv)


_KERNELS = _import_kernels()  # imported once, so that compiled code sees a constant


def mamba_kernels() -> SimpleNamespace | None:
    return _KERNELS


# --- the recurrence ------------------------------------------------------------------------------
def ssd_step(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             h: torch.Tensor, signed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. x (b, h, p), dt (b, h), A (h,), B and C (b, g, n), state h (b, h, p, n).
    Head j reads group j // r. `signed`: the transition is 2 exp(dt A) - 1, in (-1, 1)."""
    r = x.shape[1] // B.shape[1]
    B, C = B.repeat_interleave(r, dim=1), C.repeat_interleave(r, dim=1)  # (b, h, n)
    decay = torch.exp(dt * A)  # (b, h)
    if signed:
        decay = 2 * decay - 1
    h = decay[..., None, None] * h + (dt[..., None] * x)[..., None] * B[:, :, None, :]  # (b, h, p, n)
    y = (h @ C[..., None]).squeeze(-1)  # (b, h, p)
    return y, h


def ssd_sequential(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h0: torch.Tensor | None = None, signed: bool = False, seq_idx: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: `ssd_step` over every token. x (b, t, h, p), dt (b, t, h), B and C (b, t, g, n).
    Returns y (b, t, h, p) and the final state (b, h, p, n). With `seq_idx` (b, t), each token's
    example, the state is set back to h0 (zero when None) before the first token of every example."""
    b, t, n_head, p = x.shape
    start = h0 if h0 is not None else x.new_zeros(b, n_head, p, B.shape[-1])
    h = start
    ys = []
    for i in range(t):
        if seq_idx is not None and i:
            h = torch.where((seq_idx[:, i] != seq_idx[:, i - 1]).view(b, 1, 1, 1), start, h)
        y, h = ssd_step(x[:, i], dt[:, i], A, B[:, i], C[:, i], h, signed)
        ys.append(y)
    return torch.stack(ys, dim=1), h


def _decay(log_decay: torch.Tensor) -> torch.Tensor:
    """exp of a log-decay, clamped to [-60, 0]. Below e^-60 a weight is zero for all purposes, and an
    exp landing in float32 denormals is many times slower on CPUs. Above 0 lie only entries the
    causal mask removes; clamping them keeps exp finite, so their gradient is 0, not NaN."""
    return torch.exp(log_decay.clamp(-60.0, 0.0))


def segsum(a: torch.Tensor) -> torch.Tensor:
    """out[..., i, j] = a[..., j+1] + ... + a[..., i] for j <= i, -inf above the diagonal.

    Summed from masked copies rather than as a difference of cumulative sums, so no precision is lost
    when the running sum grows large (used across chunks, where it does)."""
    m = a.shape[-1]
    ones = torch.ones(m, m, dtype=torch.bool, device=a.device)
    terms = a[..., :, None].expand(*a.shape, m).masked_fill(~ones.tril(-1), 0.0)  # [k, j] = a_k for k > j
    return terms.cumsum(dim=-2).masked_fill(~ones.tril(), -math.inf)


def log_transition(dt: torch.Tensor, A: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The log-magnitude of each step's transition (b, t, h), and with `signed` the 0/1 flag of its
    negative ones: 2 exp(dt A) - 1 = (-1)^neg exp(log|.|), so a product over a stretch of steps is the
    exp of summed logs times the parity of the summed flags (Grazzi et al., arXiv 2411.12537)."""
    if not signed:
        return dt * A, None
    a = 2 * torch.exp(dt * A) - 1
    return a.abs().clamp_min(1e-30).log(), (a < 0).to(a.dtype)


def _sign(flips: torch.Tensor) -> torch.Tensor:
    """(-1)^flips for a tensor of (float) counts of negative transitions."""
    return 1 - 2 * torch.remainder(flips, 2)


def ssd_chunked(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                chunk: int, h0: torch.Tensor | None = None, signed: bool = False,
                seq_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked SSD algorithm; same arguments and results as `ssd_sequential`.

    Tensors stay time-major, as the projection made them, and the heads of a group are folded into
    one matrix wherever they share B or C: the state products are then (r p x l) @ (l x n) matrix
    products per chunk and group, with no copy of B or C per head. The sequence is padded to whole
    chunks with dt = 0: a padded step neither decays the state nor writes to it. With `signed`, every
    decay below is multiplied by the sign of its stretch of transitions (`log_transition`).

    With `seq_idx` (b, t) every example starts from h0, by masks rather than by resetting sums (a
    cumulative sum interrupted by -inf loses float32 precision): a chunk's weights (l, s) count only
    pairs of one example; the state a chunk writes only its last token's example; the state entering a
    chunk reaches only the example of the previous chunk's last token, and a written state carries to
    a later chunk only within one example. h0 enters at every example's first token (the transition
    there times the decays after it). The padding joins the last example."""
    b, t, n_head, p = x.shape
    g, n = B.shape[2], B.shape[3]
    r = n_head // g
    L = min(chunk, t)  # chunk length l; a short prompt is one chunk, not padded to a full one
    pad = -t % L
    if pad:
        x, B, C = (F.pad(v, (0, 0, 0, 0, 0, pad)) for v in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
        if seq_idx is not None:
            seq_idx = torch.cat([seq_idx, seq_idx[:, -1:].expand(b, pad)], dim=1)
    c = (t + pad) // L
    log_a, neg = log_transition(dt, A, signed)
    acs = log_a.view(b, c, L, n_head).cumsum(2)  # (b, c, l, h) log-decay since the chunk's start
    ncs = neg.view(b, c, L, n_head).cumsum(2) if neg is not None else None  # (b, c, l, h) sign flips so far
    xdt = (x * dt[..., None]).view(b, c, L, n_head, p)  # (b, c, l, h, p)
    Bg = B.view(b, c, L, g, n).transpose(2, 3)  # (b, c, g, l, n)
    Cg = C.view(b, c, L, g, n).transpose(2, 3)  # (b, c, g, l, n)

    # 1. inside each chunk: y_l = sum_{s <= l} (C_l . B_s) exp(acs_l - acs_s) dt_s x_s
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    if seq_idx is not None:
        seg = seq_idx.view(b, c, L)  # (b, c, l)
        causal = (causal & (seg[..., :, None] == seg[..., None, :]))[:, :, None]  # (b, c, 1, l, s)
    scores = (Cg @ Bg.transpose(-1, -2)).masked_fill(~causal, 0.0)  # (b, c, g, l, s), shared by r heads
    acs_h = acs.transpose(2, 3).contiguous()  # (b, c, h, l), contiguous so that decay is
    decay = _decay(acs_h[..., :, None] - acs_h[..., None, :])  # (b, c, h, l, s), finite; masked via scores
    if ncs is not None:
        ncs_h = ncs.transpose(2, 3)
        decay = decay * _sign(ncs_h[..., :, None] - ncs_h[..., None, :])
    weights = (scores[:, :, :, None] * decay.view(b, c, g, r, L, L)).view(b, c, n_head, L, L)
    y = (weights @ xdt.transpose(2, 3)).transpose(2, 3)  # (b, c, l, h, p)

    # 2. the state each chunk writes, as it stands at the chunk's end: per group (r p x l) @ (l x n)
    to_end = _decay(acs[:, :, -1:] - acs)  # (b, c, l, h)
    if ncs is not None:
        to_end = to_end * _sign(ncs[:, :, -1:] - ncs)
    if seq_idx is not None:
        to_end = to_end * (seg == seg[..., -1:])[..., None]
    xs = (xdt * to_end[..., None]).view(b, c, L, g, r * p).permute(0, 1, 3, 4, 2)  # (b, c, g, r p, l)
    written = (xs @ Bg).view(b, c, n_head, p, n)  # (b, c, h, p, n)

    # 2b. examples start from h0: y_l += w_l C_l . h0, w_l = a_s0 ... a_l over l's example from its first
    # token s0 when s0 lies in this chunk (else 0; later chunks receive it in the written state)
    if seq_idx is not None and h0 is not None:
        first = F.pad(seq_idx[:, 1:] != seq_idx[:, :-1], (1, 0), value=True).view(b, c, L)  # examples' first tokens
        at = torch.arange(L, device=x.device)
        s0 = torch.where(first, at, -1).cummax(dim=-1).values  # (b, c, l) the latest first token <= l, or -1
        idx = s0.clamp_min(0)[..., None].expand(b, c, L, n_head)
        a = torch.exp(log_a).view(b, c, L, n_head).gather(2, idx)  # (b, c, l, h) the transition at s0
        w = _decay(acs - acs.gather(2, idx)) * a * (s0 >= 0)[..., None]  # (b, c, l, h)
        if ncs is not None:
            w = w * _sign(ncs - ncs.gather(2, idx) + neg.view(b, c, L, n_head).gather(2, idx))
        read0 = Cg @ h0.reshape(b, 1, g, r * p, n).transpose(-1, -2)  # (b, c, g, l, r p)
        y = y + read0.transpose(2, 3).reshape(b, c, L, n_head, p) * w[..., None]
        written = written + w[:, :, -1, :, None, None] * h0[:, None]
    if seq_idx is not None or h0 is None:  # with seq_idx, h0 has entered at the first token
        h0 = x.new_zeros(b, n_head, p, n)

    # 3. pass states across chunk boundaries: the state entering each chunk, and the final state
    states = torch.cat([h0[:, None], written], dim=1)  # (b, c+1, h, p, n)
    across = torch.exp(segsum(F.pad(acs[:, :, -1].transpose(1, 2), (1, 0))))  # (b, h, c+1, c+1) to, from
    if ncs is not None:
        flips = F.pad(ncs[:, :, -1].transpose(1, 2), (1, 0)).cumsum(-1)  # (b, h, c+1) flips before each state
        across = across * _sign(flips[..., :, None] - flips[..., None, :])
    if seq_idx is not None:
        ends = torch.cat([seg[:, :1, 0], seg[:, :, -1]], dim=1)  # (b, c+1) the example of each state
        across = across * (ends[:, :, None] == ends[:, None, :])[:, None]
    states = torch.einsum("bhzw,bwhk->bzhk", across, states.flatten(-2)).reshape(b, c + 1, n_head, p, n)
    entering, final = states[:, :-1], states[:, -1]  # (b, c, h, p, n), (b, h, p, n)

    # 4. what the entering state contributes: y_l += exp(acs_l) C_l . h_enter, per group (l x n) @ (n x r p)
    read = Cg @ entering.reshape(b, c, g, r * p, n).transpose(-1, -2)  # (b, c, g, l, r p)
    from_start = _decay(acs) if ncs is None else _decay(acs) * _sign(ncs)  # (b, c, l, h)
    if seq_idx is not None:
        from_start = from_start * (seg == ends[:, :-1, None])[..., None]
    y = y + read.transpose(2, 3).reshape(b, c, L, n_head, p) * from_start[..., None]  # (b, c, l, h, p)
    return y.reshape(b, c * L, n_head, p)[:, :t], final


def conv_examples(xbc: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, positions: torch.Tensor,
                  before: torch.Tensor | None = None) -> torch.Tensor:
    """The causal depthwise convolution (before SiLU) of packed examples, each as if alone. xbc (b, t, e'),
    time-major, with e' the convolved channels; weight (e', 1, k); positions (b, t) within each example.
    Tap j of token i reads input i - j when it lies in i's example, else the input that far before the
    example: from `before` (b, e', k-1), the inputs every example continues from, or zero without."""
    t, k = xbc.shape[1], weight.shape[-1]
    w = weight[:, 0]  # (e', k)
    earlier = F.pad(xbc, (0, 0, k - 1, 0))  # (b, k-1+t, e')
    out = bias + w[:, k - 1] * xbc  # (b, t, e') tap 0
    for j in range(1, k):
        out = out + w[:, k - 1 - j] * earlier[:, k - 1 - j : k - 1 - j + t] * (positions >= j)[..., None]
    if before is not None:  # what `before` adds depends only on the position q < k-1 in the example: tap
        # j > q reads the input j - q before the example, entry k - 1 - j + q of `before`
        prefix = before.transpose(1, 2).to(xbc.dtype)  # (b, k-1, e')
        table = torch.stack([sum(w[:, k - 1 - j] * prefix[:, k - 1 - j + q] for j in range(q + 1, k))
                             for q in range(k - 1)] + [torch.zeros_like(prefix[:, 0])], dim=1)  # (b, k, e')
        out = out + F.one_hot(positions.clamp(max=k - 1), k).to(xbc.dtype) @ table
    return out


# --- the mixer -----------------------------------------------------------------------------------
@dataclass
class SSMCache:
    """Recurrent decoding state of a stack of mixers, one slot per mixer. Constant size."""

    conv: torch.Tensor  # (m, b, conv_dim, k-1) the last k-1 convolution inputs
    ssm: torch.Tensor  # (m, b, h, p, n) the SSM state, in float32

    @classmethod
    def empty(cls, n_slots: int, batch: int, mixer: Mamba2, device: torch.device, dtype: torch.dtype) -> SSMCache:
        o = mixer.opts
        conv = torch.zeros(n_slots, batch, mixer.conv_dim, o.d_conv - 1, device=device, dtype=dtype)
        ssm = torch.zeros(n_slots, batch, mixer.n_head, o.head_dim, o.d_state, device=device, dtype=torch.float32)
        return cls(conv, ssm)


class GatedRMSNorm(nn.Module):
    """RMSNorm(y * SiLU(z)) per group of channels, times a learned gain (Mamba-2's output norm)."""

    def __init__(self, dim: int, groups: int, eps: float) -> None:
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = y * F.silu(z)
        y = y.unflatten(-1, (self.groups, -1))  # (b, t, g, e/g)
        y = F.rms_norm(y, (y.shape[-1],), eps=self.eps).flatten(-2)  # (b, t, e)
        return y * self.weight


class Mamba2(nn.Module):
    def __init__(self, d_model: int, opts: Mamba2Options, eps: float = 1e-5) -> None:
        super().__init__()
        e = opts.expand * d_model
        if e % opts.head_dim:
            raise LooplabError(f"head_dim {opts.head_dim} must divide expand * d_model = {e}")
        self.opts, self.d_inner, self.n_head = opts, e, e // opts.head_dim
        if self.n_head % opts.n_groups:
            raise LooplabError(f"n_groups {opts.n_groups} must divide the number of SSM heads {self.n_head}")
        self.conv_dim = e + 2 * opts.n_groups * opts.d_state  # x, B, C go through the convolution
        self.in_proj = nn.Linear(d_model, e + self.conv_dim + self.n_head, bias=False)  # z, xBC, dt
        self.conv = nn.Conv1d(self.conv_dim, self.conv_dim, opts.d_conv, groups=self.conv_dim)
        self.dt_bias = nn.Parameter(torch.empty(self.n_head))
        self.A_log = nn.Parameter(torch.empty(self.n_head))
        self.D = nn.Parameter(torch.empty(self.n_head))
        self.norm = GatedRMSNorm(e, opts.n_groups, eps)
        self.out_proj = nn.Linear(e, d_model, bias=False)

    @torch.no_grad()
    def init_weights(self, out_std: float, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        """in_proj N(0, 0.02); out_proj N(0, out_std); conv weights U(+-1/sqrt(k)), bias 0;
        A = -U(1, 16) (stored as A_log = log(-A)); dt_bias the inverse softplus of a dt drawn
        log-uniformly from [dt_min, dt_max]; D = 1; gated norm gain 1. (Mamba-2's scheme.)"""
        nn.init.normal_(self.in_proj.weight, 0.0, 0.02)
        nn.init.normal_(self.out_proj.weight, 0.0, out_std)
        bound = 1 / math.sqrt(self.opts.d_conv)
        nn.init.uniform_(self.conv.weight, -bound, bound)
        nn.init.zeros_(self.conv.bias)
        self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())
        dt = torch.exp(torch.empty_like(self.dt_bias).uniform_(math.log(dt_min), math.log(dt_max)))
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt
        nn.init.ones_(self.D)
        nn.init.ones_(self.norm.weight)

    def path(self, device: torch.device) -> str:
        """Which scan a full-sequence forward takes on `device`."""
        impl = self.opts.ssm_impl
        if impl == "auto":  # the kernels know only transitions in (0, 1)
            kernel = device.type == "cuda" and mamba_kernels() is not None and not self.opts.negative_eigenvalues
            return "kernel" if kernel else "chunked"
        return impl

    def forward(self, u: torch.Tensor, cache: SSMCache | None = None, slot: int = 0,
                segments: Segments | None = None, shared: int = 0) -> torch.Tensor:
        """u (b, t, d). With `segments` of the last t - `shared` positions (packed examples), each example
        is computed as if alone after the first `shared` positions (ssm_mem's memory), which run first
        as one sequence; every example starts from their state (without them, from the cache's state,
        or from zero). The cache is then only read."""
        if segments is not None and shared:
            start = SSMCache.empty(1, u.shape[0], self, u.device, u.dtype)
            head = self(u[:, :shared], start)  # (b, shared, d); start now holds the state after it
            return torch.cat([head, self(u[:, shared:], start, segments=segments)], dim=1)
        b, t, _ = u.shape
        e, h, o = self.d_inner, self.n_head, self.opts
        z, xbc, dt = self.in_proj(u).split((e, self.conv_dim, h), dim=-1)  # (b, t, e) (b, t, conv_dim) (b, t, h)
        A = -torch.exp(self.A_log.float())  # (h,)
        path = self.path(u.device) if cache is None and segments is None else "pytorch"
        xbc = self.convolve(xbc, cache, slot, use_kernel=path == "kernel", segments=segments)  # (b, t, conv_dim)
        x, B, C = xbc.split((e, o.n_groups * o.d_state, o.n_groups * o.d_state), dim=-1)
        x = x.view(b, t, h, o.head_dim)  # (b, t, h, p)
        B, C = B.view(b, t, o.n_groups, o.d_state), C.view(b, t, o.n_groups, o.d_state)  # (b, t, g, n)
        if path == "kernel":
            y = mamba_kernels().chunk_scan(x, dt, A, B, C, o.chunk, D=self.D, dt_bias=self.dt_bias, dt_softplus=True)
        else:
            dt = F.softplus(dt + self.dt_bias)  # (b, t, h)
            seq_idx = segments.ids if segments is not None else None
            y = self.scan(x, dt, A, B, C, cache, slot, seq_idx) + x * self.D[:, None]  # (b, t, h, p)
        return self.out_proj(self.norm(y.reshape(b, t, e), z))

    def convolve(self, xbc: torch.Tensor, cache: SSMCache | None, slot: int, use_kernel: bool,
                 segments: Segments | None = None) -> torch.Tensor:
        """Causal depthwise convolution then SiLU; with a cache, the previous inputs stand in for the
        zero padding and the last k-1 inputs are kept for the next call (with `segments` they stand
        before every example, and the cache is not written)."""
        if segments is not None:
            before = cache.conv[slot] if cache is not None else None
            return F.silu(conv_examples(xbc, self.conv.weight, self.conv.bias, segments.positions, before))
        xbc = xbc.transpose(1, 2)  # (b, conv_dim, t)
        k = self.opts.d_conv
        kernels = mamba_kernels() if use_kernel else None
        if kernels is not None and kernels.conv is not None:
            out = kernels.conv(xbc.contiguous(), self.conv.weight.squeeze(1), self.conv.bias, activation="silu")
            return out.transpose(1, 2)
        if cache is None:
            xbc = F.pad(xbc, (k - 1, 0))
        else:
            xbc = torch.cat([cache.conv[slot], xbc], dim=-1)  # (b, conv_dim, k-1+t)
            cache.conv[slot] = xbc[..., xbc.shape[-1] - (k - 1):]
        out = F.conv1d(xbc, self.conv.weight, self.conv.bias, groups=self.conv_dim)  # (b, conv_dim, t)
        return F.silu(out).transpose(1, 2)

    def scan(self, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             cache: SSMCache | None, slot: int, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        """The recurrence in float32: one step when decoding a single token, otherwise the chunked
        algorithm (or the sequential reference when ssm_impl says so), from the cached state if any.
        With `seq_idx` (packed examples) every example starts from that state, which is not updated."""
        dtype = x.dtype
        x, dt, B, C = x.float(), dt.float(), B.float(), C.float()
        # a copy: the slot is overwritten below, and autograd may keep h0 (packed ssm_mem trains through a cache)
        h0 = cache.ssm[slot].clone() if cache is not None else None
        signed = self.opts.negative_eigenvalues
        if cache is not None and x.shape[1] == 1 and seq_idx is None:
            y, h = ssd_step(x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], h0, signed)
            y = y[:, None]
        elif self.opts.ssm_impl == "sequential":
            y, h = ssd_sequential(x, dt, A, B, C, h0, signed, seq_idx)
        else:
            y, h = ssd_chunked(x, dt, A, B, C, self.opts.chunk, h0, signed, seq_idx)
        if cache is not None and seq_idx is None:
            cache.ssm[slot] = h
        return y.to(dtype)
