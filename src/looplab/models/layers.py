"""Shared building blocks: RMSNorm, rotary embeddings, attention with a KV cache, SwiGLU MLP, Block.

Letters: B batch, T query length, S key length, H query heads, G key/value heads, D head dim,
C model width (d_model), F MLP hidden width.

Rotary position embedding: Su et al., arXiv 2104.09864. Grouped-query attention: Ainslie et al.,
arXiv 2305.13245. SwiGLU: Shazeer, arXiv 2002.05202.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from looplab.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Rotary(nn.Module):
    """cos/sin tables for positions; grown on demand so evaluation may run past max_seq_len."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_len)

    def _build(self, length: int) -> None:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)  # (T, D/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if start + length > self.cos.shape[0]:
            self._build(2 * (start + length))
        return self.cos[start : start + length], self.sin[start : start + length]

    def at(self, ids: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of arbitrary positions ids (B, T), every one below `bound` (a host-side figure, so
        the table grows without reading ids back from the device): (B, T, D/2) each."""
        if bound > self.cos.shape[0]:
            self._build(2 * bound)
        return self.cos[ids], self.sin[ids]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the two halves of the head dimension. x: (B, ..., T, D); cos, sin
    (T, D/2) shared by every row, or (B, T, D/2) per row (random positions)."""
    if cos.dim() == 3:
        shape = (cos.shape[0],) + (1,) * (x.dim() - 3) + cos.shape[1:]
        cos, sin = cos.view(shape), sin.view(shape)
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.type_as(x)


def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """`apply_rotary` with the tables of `rope`; x unchanged when rope is None (no rotary positions)."""
    return x if rope is None else apply_rotary(x, *rope)


@dataclass
class KVCache:
    """Preallocated keys and values, one slot per attention application.

    A looped model applies the same layer several times; every application is its own slot.
    `pos` counts the tokens already written; every slot advances together.
    """

    k: torch.Tensor  # (N, B, G, S, D), N slots
    v: torch.Tensor  # (N, B, G, S, D)
    pos: int = 0

    @classmethod
    def empty(cls, n_slots: int, batch: int, n_kv_head: int, max_len: int, head_dim: int,
              device: torch.device, dtype: torch.dtype) -> KVCache:
        shape = (n_slots, batch, n_kv_head, max_len, head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def write(self, slot: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, G, T, D) at the current position; return the keys/values so far."""
        end = self.pos + k.shape[2]
        if end > self.k.shape[3]:
            raise ValueError(f"KV cache holds {self.k.shape[3]} tokens, asked for {end}")
        self.k[slot, :, :, self.pos : end] = k
        self.v[slot, :, :, self.pos : end] = v
        return self.k[slot, :, :, :end], self.v[slot, :, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=False)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None, slot: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, G, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(x).split((H * D, G * D, G * D), dim=-1)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, G, D).transpose(1, 2)  # (B, G, T, D)
        v = v.view(B, T, G, D).transpose(1, 2)
        q, k = rotate(q, rope), rotate(k, rope)
        start = 0
        if cache is not None:
            start = cache.pos
            k, v = cache.write(slot, k, v)  # (B, G, S, D), S = start + T
        y = attend(q, k, v, start, mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, H * D))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention of queries at positions start..start+T-1 over keys 0..S-1 (SDPA kernels);
    `mask` (B, 1, T, S), True where a query may read a key, replaces the causal mask (packed
    examples kept apart, see data.batch.Segments)."""
    T, S = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    if start == 0 and T == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if T == 1:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=start)  # (T, S)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.ff_dim, bias=False)
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, F) each
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None, slot: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rope, cache, slot, mask))
        return x + self.drop(self.mlp(self.norm2(x)))


def init_linear_weights(module: nn.Module, n_residual_layers: int) -> None:
    """Normal(0, 0.02) for every linear and embedding; residual output projections (attention
    `proj`, MLP `down`) scaled by 1/sqrt(2 * n_residual_layers) so the residual stream's variance
    does not grow with depth (GPT-2's scheme); norms start at one."""
    std_out = 0.02 / math.sqrt(2 * max(1, n_residual_layers))
    for name, p in module.named_parameters():
        if p.dim() < 2:
            if name.endswith("weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
        elif name.endswith(("attn.proj.weight", "mlp.down.weight")):
            nn.init.normal_(p, 0.0, std_out)
        else:
            nn.init.normal_(p, 0.0, 0.02)
