"""Recurrent depth (`prc`): a prelude, a recurrent core run r times, and a coda.

    embed -> prelude (P blocks) = e
          -> s_0 = init;  s_i = core(inject(s_{i-1}, e))  for i = 1..r   (core: R blocks)
          -> coda (C blocks) on s_r -> RMSNorm -> head

Huginn (Geiping et al., arXiv 2502.05171) and the recursive NanoChat model card: with
(P, R, C) = (2, 4, 2) there are 8 unique blocks and the effective depth is P + r R + C, so r = 4 is
iso-FLOP with a 20-layer baseline of the same width. Parameters do not depend on r.

Training. Every training forward draws its own r from a Poisson log-normal distribution
(`sample_recurrences`), so the model learns to be run at many depths; evaluation uses the fixed
count `n_loops` (default round(train_recur_mean)), which `with_loops` / `forward(n_loops=)` change.
Truncated backprop: the first r - bptt_k recurrences run under no_grad and only the last bptt_k
carry gradients (the prelude output e still gets gradients through every injection among those).

Injection. `add`: the core reads s + e. `concat_linear`: a linear adapter maps [s | e] (2C wide)
back to width C. It starts as [I | I], so it passes the state through and adds e: at
initialisation it equals `add`, and gradients reach both halves. (A [I | 0] start would leave a
zero-initialised state blind to the tokens, so the output could not depend on the input and the
prelude would get no gradient until the adapter's right half had moved.)

Decoding. `new_state()` is exact: the KV cache keeps every recurrence's keys and values, so cached
decoding equals full recomputation (tested), and evaluation scores with it. `new_state(exact=False)`
is the cheaper approximation of the recurrent-depth papers, reported only as a speed figure: the cache
has slots for the prelude and coda blocks and for the core blocks of the last
`kv_cache_recur_budget` recurrences only. A new token's recurrence i then reads the cached keys and
values of recurrence max(i, r - budget) of earlier tokens: with budget 1 every recurrence of a new
token attends to the earlier tokens' final (most refined) recurrence, and the memory is that of a
(P + R + C)-layer model. Its own keys at recurrence i are written to the same slot and overwritten by
later recurrences, so the keys that persist are those of the kept recurrences. Tokens inside one
forward chunk (the prefill) attend to each other recurrence by recurrence, so the prefill equals the
full forward; later steps differ from full recomputation unless budget >= r. With
`recur_warm_start`, the recurrent state of the tokens of a new chunk starts from the final state of
the last token before it (a single decoded token: its predecessor's) instead of the init; the
prefill starts from the init.

Causality. The prelude, every recurrence and the coda are causal self-attention blocks, and the
injection, the state init and the adapter act per position. So the state of position t after any
recurrence is a function of tokens <= t, and so are its logits. The cache budget and the warm start
only change what a decoded token reads from positions before it, never from after it.

Letters: B batch, T tokens, C d_model, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.data.batch import Batch
from looplab.errors import LooplabError
from looplab.flags import setting
from looplab.models.base import (
    LengthLoopOptions,
    LoopedModel,
    ModelOutput,
    count_params,
    loop_figures,
    masked_update,
)
from looplab.models.layers import Block, KVCache, RMSNorm, init_linear_weights
from looplab.models.positions import Positions, Rope

INJECT_MODES = ("concat_linear", "add")
STATE_INITS = ("zeros", "random")
RECUR_SIGMA = 0.5  # sigma of the log-normal rate (Huginn section 3.3)
STATE_STD = 0.02  # std of a random initial state: the token embeddings' scale at initialisation


@dataclass(frozen=True, kw_only=True)
class PRCOptions(LengthLoopOptions):
    prelude: int = setting(2, "P: blocks run once before the recurrence", range=">= 0")
    recur: int = setting(4, "R: blocks of the recurrent core, run r times", range=">= 1")
    coda: int = setting(2, "C: blocks run once on the final state", range=">= 0")
    train_recur_mean: float = setting(4.0, "mean recurrence count r of a training step (at most train_recur_max)",
                                      range=">= 1")
    train_recur_max: int = setting(16, "cap on a sampled training r", range=">= 1")
    n_loops: int = setting(0, "r at evaluation; 0 means round(train_recur_mean)", range=">= 0")
    bptt_k: int = setting(4, "gradients flow through the last bptt_k recurrences only", range=">= 1")
    inject_mode: str = setting("concat_linear", "concat_linear: adapter on [state | prelude output]; add: state + "
                               "output", choices=INJECT_MODES)
    state_init: str = setting("zeros", "initial recurrent state: zeros, or random N(0, 0.02^2)", choices=STATE_INITS)
    recur_warm_start: bool = setting(False, "approximate decoding: a token's state starts from the previous token's "
                                     "final one")
    kv_cache_recur_budget: int = setting(1, "approximate decoding: cache keys/values of the last this-many "
                                         "recurrences only", range=">= 1")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_recur_mean > self.train_recur_max:
            raise LooplabError(f"prc option train_recur_mean must be a number in [1, train_recur_max "
                               f"({self.train_recur_max})], got {self.train_recur_mean!r}")

    @property
    def eval_loops(self) -> int:
        return self.n_loops or max(1, round(self.train_recur_mean))


def sample_recurrences(mean: float, cap: int, generator: torch.Generator | None = None) -> int:
    """One training recurrence count: r = 1 + Poisson(lambda), log lambda ~ N(log(mean - 1) - sigma^2 / 2,
    sigma), clipped to [1, cap]. E[lambda] = mean - 1, so E[r] = mean before the cap (Huginn adds the
    1 after drawing with mean r-bar, which shifts its mean to r-bar + 1). The global CPU generator by
    default, so the trainer's seed fixes the schedule."""
    if mean <= 1:
        return 1
    mu = math.log(mean - 1) - RECUR_SIGMA**2 / 2
    tau = torch.normal(torch.tensor(mu), torch.tensor(RECUR_SIGMA), generator=generator)
    r = 1 + int(torch.poisson(tau.exp(), generator=generator))
    return min(r, cap)


@dataclass
class PRCState:
    """Decoding state: the KV cache and, for warm starts, the last token's final recurrent state."""

    cache: KVCache
    n_loops: int  # the recurrence count the cache's slots were laid out for
    kept: int  # recurrences whose keys and values the cache keeps (n_loops when exact)
    warm_start: bool = False  # a new chunk's state starts from the last token's final state
    warm: torch.Tensor | None = None  # (B, 1, C)

    @property
    def pos(self) -> int:
        return self.cache.pos


class PRC(LoopedModel):
    """Prelude, recurrent core and coda; `n_loops` is the number of core recurrences r."""


    def __init__(self, cfg: ModelConfig, opts: PRCOptions) -> None:
        super().__init__(cfg, opts.eval_loops)
        self.opts, self.length_policy = opts, opts.length_policy
        self.prelude_blocks = nn.ModuleList(Block(cfg) for _ in range(opts.prelude))
        self.core_blocks = nn.ModuleList(Block(cfg) for _ in range(opts.recur))
        self.coda_blocks = nn.ModuleList(Block(cfg) for _ in range(opts.coda))
        concat = opts.inject_mode == "concat_linear"
        self.adapter = nn.Linear(2 * cfg.d_model, cfg.d_model, bias=False) if concat else None
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.positions = Positions(cfg, cfg.head_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Linear and embedding weights N(0, 0.02); attention and MLP output projections
        N(0, 0.02 / sqrt(2 L)) with L = P + round(train_recur_mean) R + C, the mean effective depth;
        norm gains one. The adapter starts as [I | I]: the state passes through, e is added."""
        o = self.opts
        init_linear_weights(self, o.prelude + max(1, round(o.train_recur_mean)) * o.recur + o.coda)
        if self.adapter is not None:
            w = self.adapter.weight
            eye = torch.eye(self.cfg.d_model, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                w.copy_(torch.cat((eye, eye), dim=1))  # (C, 2C)

    # --- decoding state ---------------------------------------------------------------------------
    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> PRCState | None:
        """Exact by default: every recurrence's keys and values are kept and no warm start, so cached
        decoding equals recomputation (what evaluation scores). `exact=False` applies the options
        `kv_cache_recur_budget` and `recur_warm_start`: less memory and work, approximate logits.
        None (decode by recomputation) with random positions."""
        if not self.positions.cacheable:
            return None
        n, p = self.loops(), self.embed.weight
        kept = n if exact else min(self.opts.kv_cache_recur_budget, n)
        slots = len(self.prelude_blocks) + len(self.coda_blocks) + kept * len(self.core_blocks)
        cache = KVCache.empty(slots, batch, self.cfg.n_kv_head, max_len, self.cfg.head_dim, p.device, p.dtype)
        return PRCState(cache, n, kept, warm_start=not exact and self.opts.recur_warm_start)

    def approximate_cache(self) -> bool:
        """Whether `new_state(exact=False)` differs from the exact cache at the current loop count."""
        return self.opts.kv_cache_recur_budget < self.loops() or self.opts.recur_warm_start

    def core_slot(self, loop: int, block: int, state: PRCState) -> int:
        """Cache slot of core block `block` at recurrence `loop`: slots after the prelude's and the
        coda's, recurrences before the kept ones sharing the first kept recurrence's slots."""
        kept = max(loop - (state.n_loops - state.kept), 0)
        return len(self.prelude_blocks) + len(self.coda_blocks) + kept * len(self.core_blocks) + block

    # --- forward ----------------------------------------------------------------------------------
    def run(self, batch: Batch, state: PRCState | None, n_loops: int | None) -> ModelOutput:
        """With a length policy each row runs the count of its task length (`batch.lengths`) instead of
        a sampled one, with gradients through all of them (no truncation). Packed examples kept apart
        (`batch.segments`) attend and take positions per example."""
        idx, ids, mask = batch.tokens, batch.positions, batch.mask
        counts = self.row_loops(batch.lengths, n_loops)
        n = int(counts.max()) if counts is not None else self.recurrences(n_loops, state)
        start = state.pos if state is not None else 0
        rope = self.positions(start, idx.shape[1], idx.shape[0], ids)
        cache = state.cache if state is not None else None
        e = self.prelude(self.embed_at(idx, start, ids), rope, cache, mask)  # (B, T, C)
        s = self.recur(e, rope, state, n, counts, mask)  # (B, T, C)
        h = self.coda(s, rope, cache, mask)
        if state is not None:
            state.cache.pos += idx.shape[1]
        logits = self.head(self.norm(h))  # (B, T, V)
        aux = {"n_loops": float(counts.float().mean()) if counts is not None else float(n), **loop_figures(n, counts)}
        return self.output(logits, batch.targets, aux)

    def recurrences(self, n_loops: int | None, state: PRCState | None) -> int:
        """A sampled r for a training forward without an explicit count, else the evaluation count."""
        if self.training and state is None and n_loops is None and self._loops_override is None:
            return sample_recurrences(self.opts.train_recur_mean, self.opts.train_recur_max)
        n = self.loops(n_loops)
        if state is not None and state.n_loops != n:
            raise LooplabError(f"prc decoding state was laid out for n_loops={state.n_loops}, called with {n}; "
                               "create the state inside the same with_loops block")
        return n

    def prelude(self, x: torch.Tensor, rope: Rope, cache: KVCache | None, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        for i, block in enumerate(self.prelude_blocks):
            x = block(x, rope, cache, slot=i, mask=mask)
        return x

    def recur(self, e: torch.Tensor, rope: Rope, state: PRCState | None,
              n_loops: int, counts: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """r recurrences of the core: a no_grad loop, then a gradient loop over the last bptt_k; with
        per-row counts (B,), every recurrence keeps its gradient and a row stops after its own count."""
        s = self.init_state(e, state)
        n_free = max(n_loops - self.opts.bptt_k, 0) if counts is None else 0
        with torch.no_grad():
            for loop in range(n_free):
                s = self.core(s, e, rope, state, loop, mask)
        for loop in range(n_free, n_loops):
            s = masked_update(s, self.core(s, e, rope, state, loop, mask), loop, counts)
        if state is not None:
            state.warm = s[:, -1:].detach()  # (B, 1, C)
        return s

    def init_state(self, e: torch.Tensor, state: PRCState | None) -> torch.Tensor:
        if state is not None and state.warm is not None and state.warm_start:
            return state.warm.expand_as(e)  # (B, T, C)
        if self.opts.state_init == "random":
            return STATE_STD * torch.randn_like(e)
        return torch.zeros_like(e)

    def inject(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if self.adapter is None:
            return s + e
        return self.adapter(torch.cat((s, e), dim=-1))  # (B, T, 2C) -> (B, T, C)

    def core(self, s: torch.Tensor, e: torch.Tensor, rope: Rope,
             state: PRCState | None, loop: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One recurrence: inject the prelude output, then the R core blocks."""
        x = self.inject(s, e)
        cache = state.cache if state is not None else None
        for i, block in enumerate(self.core_blocks):
            x = block(x, rope, cache, slot=0 if state is None else self.core_slot(loop, i, state), mask=mask)
        return x

    def coda(self, x: torch.Tensor, rope: Rope, cache: KVCache | None, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
        first = len(self.prelude_blocks)
        for i, block in enumerate(self.coda_blocks):
            x = block(x, rope, cache, slot=first + i, mask=mask)
        return x

    # --- cost -------------------------------------------------------------------------------------
    def cost(self, seq_len: int) -> dict[str, float]:
        """At the current r: core blocks and adapter count once per recurrence; effective depth
        P + r R + C. With `add` injection and r = 4, (2, 4, 2) has a 20-layer baseline's FLOPs."""
        n = self.loops()
        per_loop = count_params(self.core_blocks) + (count_params(self.adapter) if self.adapter is not None else 0)
        depth = len(self.prelude_blocks) + n * len(self.core_blocks) + len(self.coda_blocks)
        return self.reuse_cost(seq_len, reused=(n - 1) * per_loop, depth=depth, n_loops=n)
