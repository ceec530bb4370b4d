"""The control model (`baseline`) and its parameter-shared looped form (`shared_loop`).

baseline:    embed -> n_layer x Block (RMSNorm, rotary self-attention through SDPA, SwiGLU MLP)
             -> RMSNorm -> head.
shared_loop: embed -> n_loops x [re-inject the embedding, n_unique x Block] -> RMSNorm -> head.
             The same n_unique blocks run on every loop, so parameters do not grow with n_loops and
             the loop count may change at evaluation (test-time compute). Looped transformers with
             input injection: Yang et al., arXiv 2311.12424; Universal Transformers, Dehghani et al.,
             arXiv 1807.03819.

Letters: B batch, T tokens, C d_model, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from looplab.config import ModelConfig
from looplab.data.batch import Batch, as_batch
from looplab.errors import LooplabError
from looplab.flags import setting
from looplab.models.base import (
    LanguageModel,
    LengthLoopOptions,
    LoopedModel,
    ModelOutput,
    count_params,
    loop_figures,
    masked_update,
)
from looplab.models.layers import Block, KVCache, RMSNorm, init_linear_weights
from looplab.models.positions import Positions, Rope


@dataclass(frozen=True, kw_only=True)
class BaselineOptions:
    """The baseline has no options of its own."""


class Transformer(LanguageModel):

    def __init__(self, cfg: ModelConfig, opts: BaselineOptions | None = None) -> None:
        super().__init__(cfg)
        self.blocks = torch.nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.positions = Positions(cfg, cfg.head_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Linear and embedding weights N(0, 0.02); attention and MLP output projections
        N(0, 0.02 / sqrt(2 n_layer)); RMSNorm gains one (see layers.init_linear_weights)."""
        init_linear_weights(self, self.cfg.n_layer)

    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> KVCache | None:
        if not self.positions.cacheable:
            return None
        p = self.embed.weight
        return KVCache.empty(self.cfg.n_layer, batch, self.cfg.n_kv_head, max_len, self.cfg.head_dim,
                             p.device, p.dtype)

    def run(self, batch: Batch, state: KVCache | None, n_loops: None) -> ModelOutput:
        """Packed examples kept apart (`batch.segments`) attend and take positions per example."""
        idx, ids, mask = batch.tokens, batch.positions, batch.mask
        start = state.pos if state is not None else 0
        rope = self.positions(start, idx.shape[1], idx.shape[0], ids)
        x = self.embed_at(idx, start, ids)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, state, slot=i, mask=mask)
        if state is not None:
            state.pos += idx.shape[1]
        logits = self.head(self.norm(x))  # (B, T, V)
        return self.output(logits, batch.targets)


# --- shared_loop ----------------------------------------------------------------------------------
PRESETS = ("iso_param", "iso_flop", "custom")


@dataclass(frozen=True, kw_only=True)
class SharedLoopOptions(LengthLoopOptions):
    preset: str = setting("iso_param", "iso_param: n_layer unique blocks; iso_flop: n_layer / n_loops; custom: "
                          "n_unique", choices=PRESETS)
    n_loops: int = setting(2, "passes through the shared stack (training default; evaluation may change it)",
                           range=">= 1")
    n_unique: int = setting(0, "unique blocks, only with preset custom (0 otherwise)", range=">= 0")
    reinject: bool = setting(True, "add the token embedding to the stream before every loop after the first")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset == "custom" and self.n_unique < 1:
            raise LooplabError("shared_loop preset 'custom' needs n_unique >= 1")
        if self.preset != "custom" and self.n_unique:
            raise LooplabError(f"shared_loop n_unique is only used with preset 'custom', got preset '{self.preset}'")

    def unique_blocks(self, n_layer: int) -> int:
        """iso_param keeps the baseline's blocks (n_loops x its compute); iso_flop keeps its depth."""
        if self.preset == "iso_param":
            return n_layer
        if self.preset == "iso_flop":
            if n_layer % self.n_loops:
                allowed = [d for d in range(1, n_layer + 1) if n_layer % d == 0]
                raise LooplabError(f"shared_loop preset 'iso_flop' needs n_loops dividing n_layer {n_layer}; "
                                   f"allowed n_loops: {', '.join(map(str, allowed))}")
            return n_layer // self.n_loops
        return self.n_unique


class SharedLoop(LoopedModel):
    """n_unique blocks applied n_loops times. One loop without re-injection is the plain stack, and
    the module names match `Transformer`, so a baseline's weights load into an iso_param model."""


    def __init__(self, cfg: ModelConfig, opts: SharedLoopOptions) -> None:
        super().__init__(cfg, opts.n_loops)
        self.opts, self.length_policy = opts, opts.length_policy
        n_unique = opts.unique_blocks(cfg.n_layer)
        self.blocks = torch.nn.ModuleList(Block(cfg) for _ in range(n_unique))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.positions = Positions(cfg, cfg.head_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """As the baseline, with output projections N(0, 0.02 / sqrt(2 * effective depth)): the
        residual stream sums n_unique * n_loops block outputs."""
        init_linear_weights(self, len(self.blocks) * self.n_loops)

    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> KVCache | None:
        if not self.positions.cacheable:
            return None
        p = self.embed.weight
        slots = len(self.blocks) * self.loops()  # one slot per block application
        return KVCache.empty(slots, batch, self.cfg.n_kv_head, max_len, self.cfg.head_dim, p.device, p.dtype)

    def run(self, batch: Batch, state: KVCache | None, n_loops: int | None) -> ModelOutput:
        """With a length policy each row runs the count of its task length (`batch.lengths`): the batch
        runs the largest, a row's stream stops changing after its own last loop. Packed examples kept
        apart (`batch.segments`) attend and take positions per example."""
        idx, ids, mask = batch.tokens, batch.positions, batch.mask
        counts = self.row_loops(batch.lengths, n_loops)
        n = int(counts.max()) if counts is not None else self.loops(n_loops)
        start = state.pos if state is not None else 0
        rope = self.positions(start, idx.shape[1], idx.shape[0], ids)
        e = self.embed_at(idx, start, ids)  # (B, T, C)
        x = e
        for loop in range(n):
            y = x + e if loop and self.opts.reinject else x
            x = masked_update(x, self.loop(y, rope, state, loop, mask), loop, counts)
        if state is not None:
            state.pos += idx.shape[1]
        logits = self.head(self.norm(x))  # (B, T, V)
        return self.output(logits, batch.targets, loop_figures(n, counts))

    def logits_per_loop(self, batch: Batch | torch.Tensor, max_loops: int) -> list[torch.Tensor]:
        """One pass of max_loops loops, read out after each: loop n's stream is the n-loop model's."""
        batch = as_batch(batch)
        idx, ids = batch.tokens, batch.positions
        with self.reading(batch):
            rope = self.positions(0, idx.shape[1], idx.shape[0], ids)
            e = self.embed_at(idx, 0, ids)
            x, out = e, []
            for loop in range(max_loops):
                x = self.loop(x + e if loop and self.opts.reinject else x, rope, None, loop, batch.mask)
                out.append(self.head(self.norm(x)))
        return out

    def loop(self, x: torch.Tensor, rope: Rope, state: KVCache | None,
             loop: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One pass through the shared stack; cache slots are numbered by (loop, block)."""
        first = loop * len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, state, slot=first + i, mask=mask)
        return x

    def cost(self, seq_len: int) -> dict[str, float]:
        n = self.loops()
        return self.reuse_cost(seq_len, reused=(n - 1) * count_params(self.blocks), depth=len(self.blocks) * n,
                               n_loops=n)
