"""The control model: a pre-norm decoder-only transformer with RoPE (`baseline`).

embed -> n_layer x Block (RMSNorm, rotary self-attention through SDPA, SwiGLU MLP) -> RMSNorm -> head.
Letters: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from looplab.config import ModelConfig
from looplab.models.base import LanguageModel, ModelOutput
from looplab.models.layers import Block, KVCache, RMSNorm, Rotary, init_linear_weights


@dataclass(frozen=True, kw_only=True)
class BaselineOptions:
    """The baseline has no options of its own."""


class Transformer(LanguageModel):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.blocks = torch.nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.rotary = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_base)
        self.init_weights()

    def init_weights(self) -> None:
        """Linear and embedding weights N(0, 0.02); attention and MLP output projections
        N(0, 0.02 / sqrt(2 n_layer)); RMSNorm gains one (see layers.init_linear_weights)."""
        init_linear_weights(self, self.cfg.n_layer)

    def new_state(self, batch: int, max_len: int) -> KVCache:
        p = self.embed.weight
        return KVCache.empty(self.cfg.n_layer, batch, self.cfg.n_kv_head, max_len, self.cfg.head_dim,
                             p.device, p.dtype)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                state: KVCache | None = None) -> ModelOutput:
        start = state.pos if state is not None else 0
        rope = self.rotary(start, idx.shape[1])
        x = self.embed(idx)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, state, slot=i)
        if state is not None:
            state.pos += idx.shape[1]
        logits = self.head(self.norm(x))  # (B, T, V)
        return self.output(logits, targets)
