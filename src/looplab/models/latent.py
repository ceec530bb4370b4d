"""Thought tokens beside the token stream (`latent`) and adaptive halting over them (`act`).

    embed -> prelude (token blocks) -> seed thoughts -> think (K loops of the thought core)
          -> inject thoughts -> coda (token blocks) -> RMSNorm -> head

Causal design. The seed sketch refines one set of thoughts that attends to the whole sequence and
adds their mean to every position: position t then reads the tokens after t, and a causal language
model trained that way cheats. Here every position t owns Z thought tokens, which
- start as learned thought embeddings plus a projection of the token state h_t,
- cross-attend only to the token states h_s with s <= t (the causal mask of the token stream),
- self-attend only among the Z thoughts of the same position,
- are written back only into position t.
So the thoughts at t are a function of tokens <= t; the model stays a causal language model and
cached decoding is exact (the keys and values the thoughts read are cached like any attention
layer's). `test_latent_leak_is_detected` removes the mask and checks that the causality test fails.

Vectorised over positions: the Z thoughts of a position act as Z query heads that share one
key/value head (the grouped-query layout), so the cross-attention of all positions' thoughts is one
causal SDPA call over (B, H*Z, T, D) queries and (B, H, S, D) keys. `thought_attend_reference`
loops over positions and is the slow reference.

`act` halts per position with adaptive computation time (Graves, arXiv 1603.08983): after loop k a
halting head gives p_k; a position halts at the first loop N where p_1 + ... + p_N >= 1 - eps (or at
the loop cap); its thoughts are the mix sum_k w_k z_k with w_k = p_k before N and the remainder
R = 1 - (p_1 + ... + p_{N-1}) at N; the ponder cost N + R joins the loss with weight lambda_ponder.
Related: continuous thoughts (Coconut, arXiv 2412.06769), pause tokens (arXiv 2310.02226).

Letters: B batch, T query positions, S key positions, Z thoughts per position, H heads, D thought
head dim, C d_model, E d_thought (= H * D), K loops.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.data.batch import Batch, as_batch
from looplab.errors import LooplabError
from looplab.flags import check_settings, setting
from looplab.models import layers
from looplab.models.base import LoopedModel, ModelOutput, count_params, loop_figures
from looplab.models.layers import MLP, Block, KVCache, RMSNorm, rotate
from looplab.models.positions import Positions, Rope


@dataclass(frozen=True, kw_only=True)
class LatentOptions:
    n_loops: int = setting(2, "K: refinement loops of the thought core (evaluation may change it)", range=">= 1")
    n_thoughts: int = setting(2, "Z: thought tokens per position (Z * d_thought = d_model by default)", range=">= 1")
    d_thought: int = setting(0, "thought width E; 0 means d_model // 2 (E / n_head must be even)", range=">= 0")
    n_prelude: int = setting(0, "token blocks before the thoughts read the stream; 0 means ceil(n_layer / 2)",
                             range=">= 0")

    def __post_init__(self) -> None:
        check_settings(self)

    def thought_width(self, cfg: ModelConfig) -> int:
        width = self.d_thought or cfg.d_model // 2
        if width % cfg.n_head or (width // cfg.n_head) % 2:
            raise LooplabError(f"d_thought {width} must be a multiple of 2 * n_head ({2 * cfg.n_head})")
        return width

    def prelude_blocks(self, n_layer: int) -> int:
        n = self.n_prelude or -(-n_layer // 2)
        if n > n_layer:
            raise LooplabError(f"n_prelude {n} exceeds n_layer {n_layer}; allowed: 1..{n_layer}")
        return n


@dataclass(frozen=True, kw_only=True)
class ActOptions(LatentOptions):
    n_loops: int = setting(4, "max_K: the most loops a position may take (evaluation may change it)", range=">= 1")
    lambda_ponder: float = setting(0.001, "weight of the ponder cost N + R (0.01 collapsed to loop 1 on the CPU)",
                                   range=">= 0")
    halt_eps: float = setting(0.01, "a position halts once its summed p_halt reaches 1 - halt_eps", range="(0, 1)")
    halt_init: float = setting(0.0, "p_halt of every loop at initialisation; 0 means 1 / n_loops (start deep)",
                               range="[0, 1)")
    ponder_warmup: int = setting(0, "training forwards over which the ponder weight ramps from 0 to lambda_ponder",
                                 range=">= 0")
    min_steps_explore: float = setting(0.0, "share of positions that, in training, may not halt before a random "
                                       "loop in 2..K", range="[0, 1]")

    @property
    def halt_bias(self) -> float:
        """Initial halting logit. p = 1 / K makes the sum reach 1 only at loop K: every position
        starts at the deepest loop with equal weight on every loop, instead of collapsing at loop 1."""
        p = min(self.halt_init or 1.0 / self.n_loops, 0.999)
        return math.log(p / (1 - p))


# --- thought attention: fast path and reference ---------------------------------------------------
def thought_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """q (B, H*Z, T, D) at positions start..start+T-1; k, v (B, H, S, D). Query head h*Z + z reads
    key head h, and the causal mask (or `mask`, examples kept apart) lets the thoughts of position t
    read only keys s <= t."""
    return layers.attend(q, k, v, start, mask)


def thought_attend_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int) -> torch.Tensor:
    """One position at a time, keys repeated per thought: slow and obviously causal."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, H*Z, S, D)
    out = []
    for t in range(q.shape[2]):
        keys, values = k[:, :, : start + t + 1], v[:, :, : start + t + 1]
        scores = q[:, :, t : t + 1] @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H*Z, 1, s)
        out.append(scores.softmax(-1) @ values)
    return torch.cat(out, dim=2)


# --- the thought core ------------------------------------------------------------------------------
@dataclass
class Memory:
    """What the thoughts read: the token stream's keys and values, and the query positions."""

    k: torch.Tensor  # (B, H, S, D)
    v: torch.Tensor  # (B, H, S, D)
    rope: Rope  # cos, sin of the query positions, (T, D/2) or (B, T, D/2) each; None unrotated
    start: int  # position of the first query
    mask: torch.Tensor | None = None  # (B, 1, T, S) packed examples kept apart; None: causal


class ThoughtCore(nn.Module):
    """One loop: cross-attention to the causal prefix, self-attention among a position's Z
    thoughts, SwiGLU MLP; pre-norm residual updates at width E."""

    def __init__(self, cfg: ModelConfig, width: int) -> None:
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, width // cfg.n_head
        self.kv = nn.Linear(cfg.d_model, 2 * width, bias=False)  # token states -> keys, values
        self.norm_cross = RMSNorm(width, cfg.norm_eps)
        self.cross_q = nn.Linear(width, width, bias=False)
        self.cross_proj = nn.Linear(width, width, bias=False)
        self.norm_self = RMSNorm(width, cfg.norm_eps)
        self.self_qkv = nn.Linear(width, 3 * width, bias=False)
        self.self_proj = nn.Linear(width, width, bias=False)
        self.norm_mlp = RMSNorm(width, cfg.norm_eps)
        self.mlp = MLP(dataclasses.replace(cfg, d_model=width, d_ff=0, options={}))

    def read(self, h: torch.Tensor, rope: Rope, cache: KVCache | None, mask: torch.Tensor | None = None
             ) -> Memory:
        """Keys and values of the (normed) token states h (B, T, C), once per forward."""
        B, T, _ = h.shape
        H, D = self.n_head, self.head_dim
        k, v = self.kv(h).view(B, T, 2, H, D).permute(2, 0, 3, 1, 4)  # (B, H, T, D) each
        k = rotate(k, rope)
        start = 0
        if cache is not None:
            start = cache.pos
            k, v = cache.write(0, k, v)  # (B, H, S, D)
        return Memory(k, v, rope, start, mask)

    def forward(self, z: torch.Tensor, mem: Memory) -> torch.Tensor:
        z = z + self.cross(self.norm_cross(z), mem)
        z = z + self.mix(self.norm_self(z))
        return z + self.mlp(self.norm_mlp(z))

    def cross(self, z: torch.Tensor, mem: Memory) -> torch.Tensor:
        B, T, Z, E = z.shape
        H, D = self.n_head, self.head_dim
        q = self.cross_q(z).view(B, T, Z, H, D).permute(0, 3, 2, 1, 4)  # (B, H, Z, T, D)
        q = rotate(q, mem.rope).reshape(B, H * Z, T, D)
        y = thought_attend(q, mem.k, mem.v, mem.start, mem.mask)  # (B, H*Z, T, D)
        y = y.view(B, H, Z, T, D).permute(0, 3, 2, 1, 4).reshape(B, T, Z, E)
        return self.cross_proj(y)

    def mix(self, z: torch.Tensor) -> torch.Tensor:
        """Self-attention among the Z thoughts of one position (no mask: they share a position)."""
        B, T, Z, E = z.shape
        H, D = self.n_head, self.head_dim
        q, k, v = self.self_qkv(z).view(B, T, Z, 3, H, D).permute(3, 0, 1, 4, 2, 5)  # (B, T, H, Z, D) each
        # Z is a handful: a plain softmax over Z x Z scores. (SDPA here would launch B*T*H tiny
        # problems, which cuDNN's attention refuses at B*T = 65536 on an H100.)
        w = torch.softmax((q @ k.transpose(-1, -2)) * D**-0.5, dim=-1)  # (B, T, H, Z, Z)
        y = (w @ v).transpose(2, 3)  # (B, T, Z, H, D)
        return self.self_proj(y.reshape(B, T, Z, E))

    def per_thought_params(self) -> int:
        """Weights applied once per thought per loop (all but the token-side key/value projection)."""
        return count_params(self) - self.kv.weight.numel()


# --- halting: fast path and reference ---------------------------------------------------------------
@dataclass
class Halting:
    """Per-position outcome of adaptive halting."""

    weights: torch.Tensor  # (K, B, T) weight of each loop's thoughts; sums to 1 over K
    depth: torch.Tensor  # (B, T) N, loops run before halting (1..K)
    remainder: torch.Tensor  # (B, T) R, the weight of loop N

    @property
    def ponder(self) -> torch.Tensor:
        return self.depth + self.remainder  # (B, T)


def halting_weights(p: torch.Tensor, eps: float) -> Halting:
    """Vectorised ACT arithmetic for halting probabilities p (K, B, T); the last loop given halts
    every position still running."""
    K = p.shape[0]
    before = p.cumsum(0) - p  # (K, B, T) summed p of the earlier loops
    crossed = before + p >= 1 - eps
    crossed[-1] = True
    n = crossed.int().argmax(0)  # (B, T) first loop that crosses, 0-based
    k = torch.arange(K, device=p.device).view(K, 1, 1)
    remainder = 1 - before.gather(0, n[None]).squeeze(0)  # (B, T)
    weights = torch.where(k < n, p, torch.where(k == n, remainder, torch.zeros_like(p)))
    return Halting(weights=weights, depth=(n + 1).to(p.dtype), remainder=remainder)


def halting_reference(p: list[float], eps: float) -> tuple[list[float], int, float]:
    """One position's weights, depth N and remainder R, step by step as in Graves' paper."""
    weights: list[float] = []
    total = 0.0
    for n, pk in enumerate(p, start=1):
        if total + pk >= 1 - eps or n == len(p):
            return weights + [1 - total] + [0.0] * (len(p) - n), n, 1 - total
        weights.append(pk)
        total += pk
    raise ValueError("p is empty")


# --- the models ----------------------------------------------------------------------------------
@dataclass
class LatentState:
    """Decoding state: the token blocks' KV cache and the cached keys/values the thoughts read."""

    tokens: KVCache
    thoughts: KVCache

    @property
    def pos(self) -> int:
        return self.tokens.pos

    def advance(self, n: int) -> None:
        self.tokens.pos += n
        self.thoughts.pos += n


class Latent(LoopedModel):
    """Token stream plus per-position thought tokens refined by a looped thought core."""


    halting = False

    def __init__(self, cfg: ModelConfig, opts: LatentOptions) -> None:
        super().__init__(cfg, opts.n_loops)
        self.opts = opts
        width, Z = opts.thought_width(cfg), opts.n_thoughts
        self.n_prelude = opts.prelude_blocks(cfg.n_layer)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.positions = Positions(cfg, cfg.head_dim)
        self.read_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.thought_embed = nn.Parameter(torch.empty(Z, width))
        self.thought_in = nn.Linear(cfg.d_model, width, bias=False)
        self.core = ThoughtCore(cfg, width)
        self.thought_positions = Positions(cfg, width // cfg.n_head)
        self.halt = nn.Linear(width, 1) if self.halting else None
        self.inject_norm = RMSNorm(width, cfg.norm_eps)
        self.inject = nn.Linear(Z * width, cfg.d_model, bias=False)
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        """Linear weights, token and thought embeddings N(0, 0.02); every projection that writes
        into a residual stream (attention and MLP outputs of the token blocks and the thought core,
        and `inject`) N(0, 0.02 / sqrt(2 L)) with L = n_layer + n_loops; norm gains one. The
        halting head (act) starts with zero weight and bias logit(halt_init), so every position's
        p_halt starts at halt_init (1 / n_loops by default: deep, see ActOptions.halt_bias)."""
        n_residual = self.cfg.n_layer + self.n_loops
        layers.init_linear_weights(self, n_residual)
        for p in (self.core.cross_proj.weight, self.core.self_proj.weight, self.core.mlp.down.weight,
                  self.inject.weight):
            nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_residual))
        if self.halt is not None:
            nn.init.zeros_(self.halt.weight)
            nn.init.constant_(self.halt.bias, self.opts.halt_bias)

    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> LatentState | None:
        if not self.positions.cacheable:
            return None
        p, cfg = self.embed.weight, self.cfg
        return LatentState(
            KVCache.empty(cfg.n_layer, batch, cfg.n_kv_head, max_len, cfg.head_dim, p.device, p.dtype),
            KVCache.empty(1, batch, cfg.n_head, max_len, self.core.head_dim, p.device, p.dtype))

    def run(self, batch: Batch, state: LatentState | None, n_loops: int | None) -> ModelOutput:
        """Packed examples kept apart (`batch.segments`) attend and take positions per example."""
        idx, ids, mask = batch.tokens, self.batch_positions(batch), batch.mask
        n = self.loops(n_loops)
        h, rope = self.prelude(idx, state, ids, mask)
        mem, z = self.read(h, state, ids, mask)
        z, halting = self.think(z, mem, n)
        h = h + self.inject(self.inject_norm(z).flatten(2))  # (B, T, C)
        h = self.coda(h, rope, state, mask)
        logits = self.head(self.norm(h))  # (B, T, V)
        aux, extra = self.figures(halting, n)
        return self.output(logits, batch.targets, aux, extra)

    def batch_positions(self, batch: Batch) -> torch.Tensor | None:
        """The batch's positions (data ids, or within packed examples), or with random positions a draw
        made once per pass and shared by both widths."""
        if self.positions.kind == "random":
            return self.positions.draw(batch.tokens.shape[0], batch.tokens.shape[1], batch.tokens.device,
                                       within=batch.positions)
        return batch.positions

    def prelude(self, idx: torch.Tensor, state: LatentState | None, ids: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Rope]:
        start = state.pos if state is not None else 0
        rope = self.positions.tables(start, idx.shape[1], ids)
        h = self.embed_at(idx, start, ids)  # (B, T, C)
        for i in range(self.n_prelude):
            h = self.blocks[i](h, rope, state.tokens if state is not None else None, slot=i, mask=mask)
        return h, rope

    def read(self, h: torch.Tensor, state: LatentState | None, ids: torch.Tensor | None = None,
             mask: torch.Tensor | None = None) -> tuple[Memory, torch.Tensor]:
        """The keys/values the thoughts read, and each position's seeded Z thoughts: shared
        thought embeddings plus a projection of that position's own token state."""
        x = self.read_norm(h)  # (B, T, C)
        rope = self.thought_positions.tables(state.pos if state is not None else 0, h.shape[1], ids)
        mem = self.core.read(x, rope, state.thoughts if state is not None else None, mask)
        z = self.thought_embed + self.thought_in(x)[:, :, None]  # (B, T, Z, E)
        return mem, z

    def think(self, z: torch.Tensor, mem: Memory, n_loops: int) -> tuple[torch.Tensor, Halting | None]:
        for _ in range(n_loops):
            z = self.core(z, mem)
        return z, None

    def coda(self, h: torch.Tensor, rope: Rope, state: LatentState | None, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
        for i in range(self.n_prelude, self.cfg.n_layer):
            h = self.blocks[i](h, rope, state.tokens if state is not None else None, slot=i, mask=mask)
        if state is not None:
            state.advance(h.shape[1])
        return h

    def figures(self, halting: Halting | None, n_loops: int
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        return {}, None

    def cost(self, seq_len: int) -> dict[str, float]:
        """Weights count once per application: thought-core weights Z * K times per position."""
        K, Z, E = self.loops(), self.opts.n_thoughts, self.core.n_head * self.core.head_dim
        reused = (Z * K - 1) * self.core.per_thought_params()
        if self.halt is not None:
            reused += (K - 1) * count_params(self.halt)
        out = self.reuse_cost(seq_len, reused=reused, depth=self.cfg.n_layer, n_loops=K)
        out["effective_depth"] = self.cfg.n_layer + K  # attention FLOPs stay those of the token layers
        out["flops_per_token"] += 6 * K * Z * E * seq_len + 12 * K * Z * Z * E  # thoughts: cross (causal half), self
        return out


class Act(Latent):
    """`latent` with per-position adaptive halting over the thought loops (n_loops is the cap).

    Against collapse to one loop (see ActOptions): the deep start `halt_init`; `ponder_warmup`, a
    linear ramp of the ponder weight over the first training forwards (counted in a buffer, so a
    resumed run continues the ramp); and `min_steps_explore`, the share of positions that in a
    training forward get a random minimum loop m in 2..K before which they cannot halt (their
    halting probabilities before m are zeroed), as HRM explores deeper computation."""

    halting = True

    def __init__(self, cfg: ModelConfig, opts: ActOptions) -> None:
        super().__init__(cfg, opts)
        if opts.ponder_warmup:
            self.register_buffer("ponder_calls", torch.zeros((), dtype=torch.long))

    def ponder_weight(self) -> float:
        """lambda_ponder, ramped over the first `ponder_warmup` training forwards."""
        if not self.opts.ponder_warmup:
            return self.opts.lambda_ponder
        return self.opts.lambda_ponder * min(1.0, int(self.ponder_calls) / self.opts.ponder_warmup)

    def min_loops(self, shape: torch.Size, n_loops: int, device: torch.device) -> torch.Tensor | None:
        """Per position (B, T) the first loop (1-based) at which it may halt, in training with
        exploration on; None otherwise."""
        if not self.training or not self.opts.min_steps_explore or n_loops < 2:
            return None
        explore = torch.rand(shape, device=device) < self.opts.min_steps_explore
        m = torch.randint(2, n_loops + 1, shape, device=device)
        return torch.where(explore, m, torch.ones_like(m))

    def think(self, z: torch.Tensor, mem: Memory, n_loops: int) -> tuple[torch.Tensor, Halting]:
        """Run loops until every position has halted (or the cap), then mix each loop's thoughts
        with the halting weights. Loops past a position's halt get weight zero, and positions never
        interact, so stopping when the whole batch has halted changes no output. Only evaluation
        stops early: the check is a host sync (and a graph break under torch.compile), and in a
        training batch some position almost always runs to the cap anyway."""
        zs, ps = [], []
        total = z.new_zeros(z.shape[:2])  # (B, T) summed p_halt
        floor = self.min_loops(z.shape[:2], n_loops, z.device)  # (B, T) or None
        for k in range(n_loops):
            z = self.core(z, mem)
            p = torch.sigmoid(self.halt(z.mean(dim=2)).float()).squeeze(-1)  # (B, T), fp32 under autocast
            if floor is not None:
                p = torch.where(k + 1 < floor, torch.zeros_like(p), p)
            zs.append(z)
            ps.append(p)
            total = total + p
            if not self.training and bool((total >= 1 - self.opts.halt_eps).all()):
                break
        halting = halting_weights(torch.stack(ps), self.opts.halt_eps)
        z = torch.einsum("kbt,kbtze->btze", halting.weights.to(z.dtype), torch.stack(zs))  # (B, T, Z, E)
        return z, halting

    def figures(self, halting: Halting, n_loops: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        ponder = halting.ponder.mean()
        depth = halting.depth.detach()
        aux = {"halt_depth_mean": depth.mean(), "halt_at_1_share": (depth == 1).float().mean(),
               "halt_at_max_share": (depth == n_loops).float().mean(), "ponder_cost": ponder.detach(),
               **loop_figures(halting.weights.shape[0])}  # executed: training runs every loop, halting only weights them
        weight = self.ponder_weight()
        if self.training and self.opts.ponder_warmup:
            self.ponder_calls += 1
        aux["ponder_weight"] = weight
        return aux, weight * ponder

    @torch.no_grad()
    def halting_depths(self, batch: Batch | torch.Tensor, n_loops: int | None = None) -> torch.Tensor:
        """The loop (1..n_loops) at which each position of a batch (B, T) halts: (B, T). The batch
        brings the data's position or digit ids where the model was trained with them (rows_batch)."""
        batch = as_batch(batch)
        ids = self.batch_positions(batch)
        with self.reading(batch):
            h, _ = self.prelude(batch.tokens, None, ids, batch.mask)
            mem, z = self.read(h, None, ids, batch.mask)
            _, halting = self.think(z, mem, self.loops(n_loops))
        return halting.depth.long()

    def halting_histogram(self, batch: Batch | torch.Tensor, n_loops: int | None = None) -> list[int]:
        """How many positions of a batch (B, T) halt after 1, 2, ..., n_loops loops."""
        n = self.loops(n_loops)
        return torch.bincount(self.halting_depths(batch, n).flatten() - 1, minlength=n).tolist()
