"""State-space backbones built from Mamba-2 mixers (arXiv 2405.21060): `ssm` and `ssm_mem`.

ssm:     embed -> n_layer x MixerBlock -> RMSNorm -> head
         MixerBlock: x + Mamba2(norm(x)), then x + MLP(norm(x)) when `mlp` is on (the default, so a
         layer holds a mixer where the baseline's block holds attention, at the same width and depth).
         With mlp=False the layer is the reference Mamba-2 block (norm, mixer, residual).

ssm_mem: a hybrid. Learned memory tokens (Hymba's meta tokens, arXiv 2411.13676) are prepended to
         every sequence, every `attn_every`-th layer is a causal attention Block (layers.py) in place
         of a MixerBlock, and the memory positions are dropped before the head:
         [memory; embed(idx)] -> layers (SSM, SSM, attention, ...) -> drop memory -> RMSNorm -> head.

Why ssm_mem is causal: the memory tokens are parameters, never written from the sequence, so they
carry no information about any position; attention uses the causal mask (a token sees the memory and
earlier tokens), and the mixers are causal recurrences. Position t therefore depends only on the
memory and on tokens <= t. tests/models/test_ssm.py checks this with gradients as well as with the
shared perturbation test.

Packed examples (`--packing isolated`, `batch.segments`) are kept apart: each example computes what
it computes alone, which for ssm_mem is [memory; example]. The memory runs once per row; every mixer
starts each example from its state after the memory (convolution taps included, mamba2.Mamba2), and
attention lets each example read the memory and itself, at positions restarting after the memory.

Decoding carries an `SSMState`: the mixers' constant-size `SSMCache` plus, for ssm_mem only, a
KVCache for the attention layers. The memory is fed with the first chunk of a sequence (pos == 0).
Letters: B batch, T tokens, M memory tokens, C model width, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.data.batch import Batch, Segments
from looplab.errors import LooplabError
from looplab.flags import setting
from looplab.models.base import LanguageModel, ModelOutput
from looplab.models.layers import MLP, Block, KVCache, RMSNorm, init_linear_weights
from looplab.models.mamba2 import Mamba2, Mamba2Options, SSMCache
from looplab.models.positions import Positions, Rope


@dataclass(frozen=True, kw_only=True)
class SSMOptions(Mamba2Options):
    mlp: bool = setting(True, "a SwiGLU MLP after every mixer (false: the plain Mamba-2 block)")


@dataclass(frozen=True, kw_only=True)
class SSMMemOptions(SSMOptions):
    n_mem: int = setting(8, "learned memory tokens prepended to every sequence", range=">= 0")
    attn_every: int = setting(3, "layer i is attention when (i + 1) % attn_every == 0 (1 would leave no SSM layer)",
                              range=">= 2")


@dataclass
class SSMState:
    """Decoding state: recurrent state of the mixers, KV cache of the attention layers (ssm_mem)."""

    ssm: SSMCache
    kv: KVCache | None = None
    pos: int = 0  # positions consumed, memory tokens included


class MixerBlock(nn.Module):
    """Pre-norm: x + Mamba2(norm(x)), then x + MLP(norm(x)) when `mlp` is on."""

    def __init__(self, cfg: ModelConfig, opts: SSMOptions) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = Mamba2(cfg.d_model, opts, cfg.norm_eps)
        self.norm2 = RMSNorm(cfg.d_model, cfg.norm_eps) if opts.mlp else None
        self.mlp = MLP(cfg) if opts.mlp else None
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: SSMCache | None = None, slot: int = 0,
                segments: Segments | None = None, shared: int = 0) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.norm1(x), cache, slot, segments, shared))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x


class SSM(LanguageModel):
    def __init__(self, cfg: ModelConfig, opts: SSMOptions, n_mem: int = 0, attn_every: int = 0) -> None:
        super().__init__(cfg)
        self.opts, self.n_mem = opts, n_mem
        attn = {i for i in range(cfg.n_layer) if attn_every and (i + 1) % attn_every == 0}
        self.layers = nn.ModuleList(Block(cfg) if i in attn else MixerBlock(cfg, opts) for i in range(cfg.n_layer))
        kinds = [isinstance(layer, Block) for layer in self.layers]
        self.slots = [kinds[:i].count(kind) for i, kind in enumerate(kinds)]  # cache slot within its kind
        self.n_attn = len(attn)
        self.mixers = [layer.mixer for layer in self.layers if isinstance(layer, MixerBlock)]
        self.memory_embed = nn.Parameter(torch.empty(n_mem, cfg.d_model)) if n_mem else None
        if not attn and cfg.pos_encoding == "random":
            raise LooplabError("pos_encoding random rotates attention, and this model has no attention layer; "
                               "allowed: rope (the default, which does nothing here), nope, absolute")
        self.positions = Positions(cfg, cfg.head_dim, extra=n_mem) if attn else None
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        """Embedding, memory tokens, MLP and attention weights N(0, 0.02); residual output projections
        (attention proj, MLP down, mixer out_proj) N(0, 0.02 / sqrt(2 n_layer)); norm gains one
        (layers.init_linear_weights). Mixer parameters as in Mamba-2 (see Mamba2.init_weights)."""
        init_linear_weights(self, self.cfg.n_layer)
        for mixer in self.mixers:
            mixer.init_weights(out_std=0.02 / math.sqrt(2 * self.cfg.n_layer))

    @property
    def ssm_path(self) -> str:
        """The scan a training forward takes here: kernel, chunked or sequential."""
        return self.mixers[0].path(self.embed.weight.device) if self.mixers else "none"

    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> SSMState | None:
        if self.positions is not None and not self.positions.cacheable:
            return None
        p = self.embed.weight
        ssm = SSMCache.empty(len(self.mixers), batch, self.mixers[0], p.device, p.dtype)
        kv = None
        if self.n_attn:
            kv = KVCache.empty(self.n_attn, batch, self.cfg.n_kv_head, max_len + self.n_mem, self.cfg.head_dim,
                               p.device, p.dtype)
        return SSMState(ssm, kv)

    def run(self, batch: Batch, state: SSMState | None, n_loops: None) -> ModelOutput:
        idx = batch.tokens
        start = state.pos if state is not None else 0
        x = self.embed_at(idx, max(start - self.n_mem, 0), batch.positions)  # (B, T, C); state.pos counts memory
        if self.memory_embed is not None and start == 0:
            x = torch.cat([self.memory_embed.expand(idx.shape[0], -1, -1), x], dim=1)  # (B, M+T, C)
        x = self.backbone(x, start, state, batch.segments)
        if state is not None:
            state.pos += x.shape[1]
            if state.kv is not None:
                state.kv.pos = state.pos
        logits = self.head(self.norm(x[:, -idx.shape[1]:]))  # (B, T, V), memory positions dropped
        return self.output(logits, batch.targets)

    def backbone(self, x: torch.Tensor, start: int, state: SSMState | None,
                 segments: Segments | None = None) -> torch.Tensor:
        rope, mask = self.attention_inputs(x, start, segments) if self.positions is not None else (None, None)
        for layer, slot in zip(self.layers, self.slots):
            if isinstance(layer, Block):
                x = layer(x, rope, state.kv if state is not None else None, slot, mask)
            else:
                x = layer(x, state.ssm if state is not None else None, slot, segments, self.n_mem)
        return x

    def attention_inputs(self, x: torch.Tensor, start: int, segments: Segments | None) -> tuple[Rope, torch.Tensor | None]:
        """The rotary tables of x (B, M+T, C) and the mask (None: causal). Packed examples each sit after
        the memory, as alone: positions M, M+1, ... and a mask (B, 1, M+T, M+T) that shows every
        example the memory and itself."""
        B, S = x.shape[:2]
        if segments is None:
            return self.positions(start, S, B), None
        M, dev = self.n_mem, x.device
        if self.positions.kind == "random":  # alone, an example would draw one subset for [memory; itself]
            raise LooplabError("ssm_mem with random positions cannot keep packed examples apart (its memory is "
                               "shared by a row's examples); use --packing single")
        ids = torch.cat([torch.arange(M, device=dev).expand(B, M), segments.positions + M], dim=1)  # (B, M+T)
        memory = torch.ones(S, M, dtype=torch.bool, device=dev).tril().expand(B, 1, S, M)  # keys of the memory
        examples = torch.cat([torch.zeros(B, 1, M, S - M, dtype=torch.bool, device=dev), segments.mask], dim=2)
        return self.positions(start, S, B, ids), torch.cat([memory, examples], dim=3)

    def cost(self, seq_len: int) -> dict[str, float | str]:
        """Training FLOPs per token: 6 per matmul weight, plus the attention layers' scores, plus the
        SSD scan (3x its forward: intra-chunk scores 2 l g n and values 2 l e, state write and read
        4 e n), all scaled by (T + M) / T for the memory positions. `ssm_path` names the scan."""
        out: dict[str, float | str] = dict(super().cost(seq_len))
        o, mixer = self.opts, self.mixers[0]
        matmul = int(out["params_non_embedding"]) + self.head.weight.numel()
        length = seq_len + self.n_mem
        ssd = 2 * min(o.chunk, length) * (o.n_groups * o.d_state + mixer.d_inner) + 4 * mixer.d_inner * o.d_state
        flops = 6 * matmul + 3 * len(self.mixers) * ssd + 6 * self.n_attn * self.cfg.d_model * length
        out["flops_per_token"] = int(flops * length / seq_len)
        out["ssm_path"] = self.ssm_path
        return out


def build_ssm(cfg: ModelConfig, opts: SSMOptions) -> SSM:
    return SSM(cfg, opts)


def build_ssm_mem(cfg: ModelConfig, opts: SSMMemOptions) -> SSM:
    if opts.attn_every > cfg.n_layer:
        raise LooplabError(f"attn_every {opts.attn_every} leaves no attention layer in {cfg.n_layer} layers; "
                           f"allowed: 2..{cfg.n_layer}")
    return SSM(cfg, opts, n_mem=opts.n_mem, attn_every=opts.attn_every)
