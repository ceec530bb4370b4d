"""Recursive Latent Forcing (`rlf`): a frozen base reads the prompt once, a small core loops on it.

    x = base(idx);  x_prompt = x.detach()                 the base runs once, frozen
    for loop i = 1..n:
        x = x + gate * x_prompt                            the lifeline: a per-dimension gate in fp32
        x = R_i^T core(R_i x)                              RoPE over the loop index, then the core
        logits_i = [head(norm(x[q])), halt . norm(x[q])]   a prediction at every loop, at the query q

Recursive Latent Forcing (batteryphil/mamba2backbonerecursion): per-loop supervision (loop 1
predicts the first pointer of a chain, loop 2 the next, ..., then the value, then HALT), a lifeline
that re-injects the prompt encoding at every loop, and rotary encoding of the loop index (RoFormer,
arXiv 2104.09864) so that loop counts beyond training still have an encoding. The core is a Mamba-2
block (arXiv 2405.21060) or two causal transformer blocks; both are residual, so the update is
x + R_i^T f(R_i x): the core sees the loop index through the rotation, and the rotation is undone
so that the stream stays in the frame the frozen head reads.

With core_scope=query only the query position's state loops: the core reads the positions before
it once, keeping their keys and values (PromptKV), and each loop runs the core over the query alone,
attending to them. The rotation may cover only the leading `loop_rope_dims` dimensions.

HALT is one extra output row after the base head's rows (id = the base's head width), trained
while the head stays frozen; with the byte tokenizer that is id 260, never a token of any text.
At inference `think` stops a row at its first HALT and the batch when every row has halted or at
`max_loops`. The base is any looplab checkpoint or a Hugging Face causal LM directory (rlf_base.py);
its weights are saved inside every rlf checkpoint together with its architecture, so a checkpoint
loads without the base file. `adapt_top_layers` unfreezes the base's top layers.

Letters: B batch, T tokens, L loops, C base width, V base head width (HALT is id V).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from looplab.config import ModelConfig
from looplab.data.batch import IGNORE, Batch, as_batch
from looplab.errors import LooplabError
from looplab.flags import check_settings, setting
from looplab.models.base import ModelOutput, count_params
from looplab.models.layers import Block, RMSNorm, Rotary, apply_rotary, init_linear_weights
from looplab.models.rlf_base import load_base_if_unchanged, make_base, read_base
from looplab.models.ssm import MixerBlock, SSMOptions

CORES = ("mamba2", "transformer")
CORE_INITS = ("fresh", "base_top")
CORE_SCOPES = ("sequence", "query")
LIFELINES = ("intact", "zero", "noise", "shuffle")


@dataclass(frozen=True, kw_only=True)
class RLFOptions:
    # base, base_config, base_sha256 and pad_id are filled in from --base when it is read (not flags)
    base: str = setting("", "the frozen base: a looplab checkpoint (.pt) or a Hugging Face model directory",
                        cli=False)
    base_config: Mapping[str, Any] = setting({}, "base architecture, filled in when read", cli=False)
    base_sha256: str = setting("", "digest of the base weights, filled in when read (provenance, reload check)",
                               cli=False)
    core: str = setting("mamba2", "reasoning core: mamba2 (one Mamba-2 block with MLP) or transformer (2 blocks)",
                        choices=CORES)
    core_heads: int = setting(4, "attention heads of the transformer core", range=">= 1")
    core_init: str = setting("fresh", "fresh, or base_top: the transformer core starts as a copy of the base's top "
                             "2 blocks", choices=CORE_INITS)
    core_scope: str = setting("sequence", "what loops: every position's state (sequence) or the query's alone "
                              "(query)", choices=CORE_SCOPES)
    max_loops: int = setting(16, "loop cap at inference; HALT normally stops earlier", range=">= 1")
    gate_init: float = setting(1.0, "initial lifeline gate of every dimension")
    loop_rope_base: float = setting(10000.0, "frequency base of the rotary loop encoding", range="> 1")
    loop_rope_dims: int = setting(0, "leading hidden dimensions the loop encoding rotates (0: all of them)",
                                  range=">= 0")
    adapt_top_layers: int = setting(0, "unfreeze this many top layers of the base (0: fully frozen)", range=">= 0")
    pad_id: int = setting(-1, "right-padding id of variable-length prompts (-1: none; the last token is the query)",
                          range=">= -1", cli=False)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.core_scope == "query" and self.core != "transformer":
            raise LooplabError("rlf option core_scope=query needs core=transformer (its loop attends to the prompt)")
        if self.core_init == "base_top" and self.core != "transformer":
            raise LooplabError("rlf option core_init=base_top needs core=transformer (it copies transformer blocks)")
        if not self.base and not self.base_config:
            raise LooplabError("rlf needs a base: --base PATH (a looplab checkpoint or a Hugging Face model directory)")


@dataclass
class Trace:
    """What a run of the loop produced, row by row."""

    logits: torch.Tensor  # (B, L, V+1) prediction of every loop
    preds: torch.Tensor  # (B, L) argmax per loop; HALT from a row's first HALT on
    halted_at: torch.Tensor  # (B,) 1-based loop of the first HALT, 0 when none within the loops run
    states: torch.Tensor  # (B, L, C) the query position's state after every loop


class Core(nn.Module):
    """The looped block: one Mamba-2 mixer block (with MLP) or two causal transformer blocks."""

    def __init__(self, width: int, opts: RLFOptions, eps: float) -> None:
        super().__init__()
        cfg = ModelConfig(variant="rlf", d_model=width, n_layer=2, n_head=opts.core_heads,
                          n_kv_head=opts.core_heads, vocab_size=1, norm_eps=eps)
        self.kind = opts.core
        if opts.core == "mamba2":
            self.blocks = nn.ModuleList([MixerBlock(cfg, SSMOptions())])
            self.rotary = None
        else:
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(2))
            self.rotary = Rotary(cfg.head_dim, 256, cfg.rope_base)

    def init_weights(self) -> None:
        """Linear weights N(0, 0.02), residual outputs N(0, 0.02 / sqrt(2 * blocks)), norms one;
        the mixer as in Mamba-2 (Mamba2.init_weights)."""
        init_linear_weights(self, len(self.blocks))
        for block in self.blocks:
            if isinstance(block, MixerBlock):
                block.mixer.init_weights(out_std=0.02 / (2 * len(self.blocks)) ** 0.5)

    def forward(self, u: torch.Tensor, prompt: PromptKV | None = None) -> torch.Tensor:
        """The blocks over u (B, T, C); with `prompt`, u holds the positions after the recorded ones
        and attends to their keys and values as well (transformer core only)."""
        start = prompt.pos if prompt is not None else 0
        for i, block in enumerate(self.blocks):
            u = block(u) if self.rotary is None else block(u, self.rotary(start, u.shape[1]), prompt, i)
        return u


class PromptKV:
    """The prompt positions' keys and values in every core block, for core_scope=query.

    Attention drives it as it drives a KVCache (`pos`, `write`). The first pass (pos 0) records the
    prompt's keys and values; afterwards every write returns them with the query's own appended.
    Nothing is written in place, so the loops can all backpropagate into the one prompt pass.
    """

    def __init__(self) -> None:
        self.pos = 0
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def write(self, slot: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos == 0:
            self.k[slot], self.v[slot] = k, v
            return k, v
        return torch.cat([self.k[slot], k], dim=2), torch.cat([self.v[slot], v], dim=2)


class RLF(nn.Module):
    def __init__(self, cfg: ModelConfig, opts: RLFOptions, base: nn.Module) -> None:
        super().__init__()
        self.cfg, self.opts = cfg, opts
        self.base = base  # built from opts.base_config by build_rlf
        C = self.base.width
        if C % 2:
            raise LooplabError(f"rlf needs an even base width for the loop rotation, got {C}")
        self.halt_id = self.base.vocab  # HALT: one row after the base head's
        self.gate = nn.Parameter(torch.empty(C, dtype=torch.float32))
        self.core = Core(C, opts, cfg.norm_eps)
        self.norm = RMSNorm(C, cfg.norm_eps)
        self.halt = nn.Parameter(torch.empty(C))
        d = opts.loop_rope_dims or C
        if d % 2 or d > C:
            raise LooplabError(f"rlf option loop_rope_dims must be an even number <= the base width {C} "
                               f"(0: all), got {opts.loop_rope_dims}")
        self.rope_dims = d
        inv_freq = 1.0 / (opts.loop_rope_base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.init_weights()
        self.freeze()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The base keeps its weights. Gate: gate_init everywhere (fp32). Core: Core.init_weights.
        Readout norm gain one (init_from_base copies the base's once its weights are in); HALT row
        N(0, 0.02), like a fresh embedding row."""
        self.gate.fill_(self.opts.gate_init)
        self.core.init_weights()
        nn.init.ones_(self.norm.weight)
        nn.init.normal_(self.halt, 0.0, 0.02)

    @torch.no_grad()
    def init_from_base(self) -> None:
        """Once the base's weights are in. Readout norm gain from the base's final norm when it has one
        (a looplab base): before any training, loop 1 reads the prompt the way the base's head does.
        With core_init=base_top, the core's two blocks start as copies of the base's top two."""
        norm = self.base.final_norm
        if norm is not None and getattr(norm, "weight", None) is not None:
            self.norm.weight.copy_(norm.weight)
        if self.opts.core_init == "base_top":
            top = list(self.base.layers)[-len(self.core.blocks):]
            for block, source in zip(self.core.blocks, top, strict=True):
                mine, theirs = block.state_dict(), source.state_dict()
                heads = getattr(getattr(source, "attn", None), "n_head", None)
                if heads != self.opts.core_heads or \
                        {k: v.shape for k, v in mine.items()} != {k: v.shape for k, v in theirs.items()}:
                    raise LooplabError("rlf option core_init=base_top needs a looplab transformer base whose blocks "
                                       f"match the core's ({self.opts.core_heads} heads, width {self.base.width})")
                block.load_state_dict(theirs)

    def freeze(self) -> None:
        """Base frozen, except its top `adapt_top_layers` layers."""
        k, layers = self.opts.adapt_top_layers, self.base.layers
        if k > len(layers):
            raise LooplabError(f"rlf option adapt_top_layers is {k}, but the base has {len(layers)} layers; "
                               f"allowed: 0..{len(layers)}")
        self.base.requires_grad_(False)
        for layer in list(layers)[len(layers) - k:]:
            layer.requires_grad_(True)

    def train(self, mode: bool = True) -> RLF:
        super().train(mode)
        self.base.eval()  # the base never runs dropout
        return self

    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> None:
        return None

    @property
    def uses_specials(self) -> bool:
        """Whether prompts are wrapped as [bos] prompt [sep] (looplab bases were trained so)."""
        return self.base.kind == "looplab"

    # --- phases -------------------------------------------------------------------------------------
    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        """The base's final hidden state (B, T, C); without gradients when the base is fully frozen."""
        if self.opts.pad_id >= 0:
            idx = idx.masked_fill(idx == self.opts.pad_id, 0)  # right padding: after every query, unread
        if self.opts.adapt_top_layers == 0:
            with torch.no_grad():
                return self.base.encode(idx)
        return self.base.encode(idx)

    def query(self, idx: torch.Tensor) -> torch.Tensor:
        """(B,) the position each row's prediction is read at: its last non-pad token."""
        if self.opts.pad_id < 0:
            return torch.full((idx.shape[0],), idx.shape[1] - 1, dtype=torch.long, device=idx.device)
        return (idx != self.opts.pad_id).sum(1) - 1

    def lifeline(self, x_prompt: torch.Tensor, mode: str, generator: torch.Generator | None) -> torch.Tensor:
        """What the gate re-injects: the prompt (intact), zeros, Gaussian noise with the prompt's
        per-dimension std, or the prompt of another row (rolled by one across the batch)."""
        if mode == "intact":
            return x_prompt
        if mode == "zero":
            return torch.zeros_like(x_prompt)
        if mode == "noise":
            std = x_prompt.float().flatten(0, 1).std(0)  # (C,)
            noise = torch.randn(x_prompt.shape, generator=generator, device=x_prompt.device)
            return (noise * std).to(x_prompt.dtype)
        if mode == "shuffle":
            return x_prompt.roll(1, dims=0)
        raise LooplabError(f"unknown lifeline mode '{mode}'; allowed: {', '.join(LIFELINES)}")

    def step(self, x: torch.Tensor, line: torch.Tensor, loop: int, prompt: PromptKV | None = None) -> torch.Tensor:
        """One loop: lifeline, then the core in the frame rotated by the loop index."""
        x = x + (self.gate * line.float()).to(x.dtype)
        angle = loop * self.inv_freq  # (d/2,)
        cos, sin = angle.cos(), angle.sin()
        u = self.rotate(x, cos, sin)
        return self.rotate(self.core(u, prompt), cos, -sin)  # R^T core(R x) = x + R^T f(R x)

    def sequence_loops(self, x: torch.Tensor, line: torch.Tensor, q: torch.Tensor) -> Callable[[int], torch.Tensor]:
        """core_scope=sequence: every loop updates every position's state; read at the query q (B,)."""
        rows = torch.arange(x.shape[0], device=x.device)

        def loop_once(loop: int) -> torch.Tensor:
            nonlocal x
            x = self.step(x, line, loop)
            return x[rows, q]

        return loop_once

    def query_loops(self, x: torch.Tensor, line: torch.Tensor, q: torch.Tensor) -> Callable[[int], torch.Tensor]:
        """core_scope=query: the core reads the positions before the query once (the base's encoding,
        no loop rotation) and only the query's state loops, attending to them. Rows are grouped by
        query position, so right padding is never read."""
        positions = [x.shape[1] - 1] if self.opts.pad_id < 0 else q.unique().tolist()
        groups, states = [], []  # per query position: (rows, their prompt's keys and values, lifeline); h (b, 1, C)
        for pos in positions:
            rows = (q == pos).nonzero().squeeze(1)
            prompt = PromptKV()
            self.core(x[rows, :pos], prompt)
            prompt.pos = pos
            groups.append((rows, prompt, line[rows, pos : pos + 1]))
            states.append(x[rows, pos : pos + 1])
        order = torch.cat([rows for rows, _, _ in groups]).argsort()

        def loop_once(loop: int) -> torch.Tensor:
            for i, (_, prompt, lane) in enumerate(groups):
                states[i] = self.step(states[i], lane, loop, prompt)
            return torch.cat([h[:, 0] for h in states])[order]

        return loop_once

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The loop rotation of the leading `rope_dims` dimensions; the rest pass unchanged."""
        d = self.rope_dims
        if d == x.shape[-1]:
            return apply_rotary(x, cos, sin)
        return torch.cat([apply_rotary(x[..., :d], cos, sin), x[..., d:]], dim=-1)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, V+1): the base head's logits, then HALT's."""
        h = self.norm(h)
        return torch.cat([self.base.head(h), (h @ self.halt.to(h.dtype))[:, None]], dim=-1)

    # --- the loop -----------------------------------------------------------------------------------
    def think(self, idx: torch.Tensor, n_loops: int | None = None, *, lifeline: str = "intact",
              stop_on_halt: bool = True, generator: torch.Generator | None = None) -> Trace:
        """Run up to n_loops (default max_loops); with stop_on_halt, stop once every row has halted."""
        n = n_loops or self.opts.max_loops
        x = self.encode(idx)  # (B, T, C)
        line = self.lifeline(x.detach().clone(), lifeline, generator)
        q = self.query(idx)
        loop_once = self.query_loops(x, line, q) if self.opts.core_scope == "query" else \
            self.sequence_loops(x, line, q)
        logits, states = [], []
        halted = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for loop in range(1, n + 1):
            h = loop_once(loop)  # (B, C) the query's state after this loop
            logits.append(self.readout(h))
            states.append(h)
            halted |= logits[-1].argmax(-1) == self.halt_id
            if stop_on_halt and bool(halted.all()):
                break
        return self.trace(torch.stack(logits, 1), torch.stack(states, 1))

    def trace(self, logits: torch.Tensor, states: torch.Tensor) -> Trace:
        preds = logits.argmax(-1)  # (B, L)
        is_halt = preds == self.halt_id
        after = is_halt.long().cumsum(1) > 0  # at or after the first HALT
        first = torch.where(is_halt.any(1), is_halt.long().argmax(1) + 1, torch.zeros_like(preds[:, 0]))
        return Trace(logits=logits, preds=preds.masked_fill(after, self.halt_id), halted_at=first, states=states)

    def forward(self, batch: Batch | torch.Tensor, targets: torch.Tensor | None = None, state: Any = None,
                n_loops: int | None = None) -> ModelOutput:
        """Per-loop logits (B, L, V+1) at the query. Targets (B, L), one per loop with IGNORE after
        HALT, fix L to their width; without targets L is n_loops or max_loops. No early stop here."""
        batch = as_batch(batch, targets)
        idx, targets = batch.tokens, batch.targets
        if targets is not None and n_loops is not None and n_loops != targets.shape[1]:
            raise LooplabError(f"rlf targets cover {targets.shape[1]} loops but n_loops is {n_loops}")
        n = targets.shape[1] if targets is not None else (n_loops or self.opts.max_loops)
        tr = self.think(idx, n, stop_on_halt=False)
        loss = per_loop_loss(tr.logits, targets) if targets is not None else None
        aux = {"n_loops": float(n), "gate_mean": self.gate.detach().mean()}
        return ModelOutput(logits=tr.logits, loss=loss, aux=aux)

    def realised_flops_per_token(self, aux: dict[str, Any], seq_len: int) -> float:
        """Training FLOPs per token at the loops this forward ran (its targets' width)."""
        return self.cost(seq_len, n_loops=int(aux.get("n_loops", self.opts.max_loops)))["flops_per_token"]

    def cost(self, seq_len: int, n_loops: int | None = None) -> dict[str, float]:
        """Parameters (all, trainable, base), effective depth at max_loops, and training FLOPs per
        token at max_loops: forward only through the frozen base (2 per weight), forward and
        backward through the core every loop (6 per weight per loop). With core_scope=query the core
        runs once over the prompt and every loop over its last position only."""
        params, base = count_params(self), count_params(self.base)
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        core = count_params(self.core)
        n = n_loops or self.opts.max_loops
        core_passes = 1 + n / seq_len if self.opts.core_scope == "query" else n
        return {"params": params, "params_trainable": trainable, "params_base": base,
                "params_non_embedding": params - base, "params_effective": params - base + (n - 1) * core,
                "effective_depth": len(self.base.layers) + n * len(self.core.blocks), "n_loops": n,
                "adapt_top_layers": self.opts.adapt_top_layers,
                "flops_per_token": 2 * base + 6 * (trainable - core) + 6 * core_passes * core}


def per_loop_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy averaged within each loop over its supervised rows, then over loops: every
    reasoning step weighs the same however many chains reach it."""
    B, L = targets.shape
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                         reduction="none").view(B, L)
    mask = targets != IGNORE
    per_loop = (ce * mask).sum(0) / mask.sum(0).clamp(min=1)  # (L,)
    return per_loop[mask.any(0)].mean()


def build_rlf(cfg: ModelConfig, opts: RLFOptions, build: Callable[[ModelConfig], nn.Module]) -> RLF:
    """The model; base weights come from `base` when that file still holds the recorded weights
    (a fresh run), otherwise from the checkpoint's state dict that load_checkpoint applies next.
    The base's architecture and digest are read from `base` when the options do not record them;
    `build` builds a looplab base (the registry's build_model)."""
    if cfg.pos_encoding != "rope":
        raise LooplabError(f"rlf takes its positions from its base, got pos_encoding {cfg.pos_encoding}; "
                           "set pos_encoding when training the base")
    if cfg.position_ids != "plain" or cfg.answer_at_once:
        raise LooplabError("rlf trains on its own pointer chains, which supply no digit ids or answer slots; "
                           "position_ids must be plain and answer_at_once false")
    if not opts.base_config:
        info = read_base(opts.base)
        opts = dataclasses.replace(opts, base_config=info.config, base_sha256=info.digest)
        cfg = dataclasses.replace(cfg, options={**cfg.options, "base_config": info.config, "base_sha256": info.digest})
    model = RLF(cfg, opts, make_base(opts.base_config, build))
    if opts.base and load_base_if_unchanged(model.base, opts.base, opts.base_sha256):
        model.init_from_base()
    return model
