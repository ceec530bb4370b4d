"""The interface every variant shares: `ModelOutput`, the loss, and cost accounting.

A model is an `nn.Module` with
- `forward(batch, state=None, n_loops=None) -> ModelOutput`, the same for every variant: `batch` is a
  `looplab.data.batch.Batch` (tokens, targets, and per-row facts: task lengths, packed segments) or
  token ids (B, T) with optional targets as the second argument; the variant's `run(batch, state,
  n_loops)` reads the facts it needs. The output holds logits (B, T, V) always, a loss only with
  targets, and `aux`, a dict of auxiliary scalars (ponder cost, halting depth, ...);
- `new_state(batch, max_len, exact=True)`: a decoding state (KV cache, recurrent state), or None
  when the variant only decodes by recomputation; decoding with it gives the logits of full
  recomputation. A variant with a cheaper approximate cache (prc) builds it for `exact=False` and
  says so in `approximate_cache()`; evaluation scores with the exact one;
- `cost(seq_len)`: parameter counts, effective depth and training FLOPs per token.

Looped variants derive from `LoopedModel`: their loop count is fixed by training but may be changed
at evaluation, either per call (`forward(..., n_loops=n)`) or for a whole decoding run
(`with model.with_loops(n): ...`), so that prefill and every decoding step use the same count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from looplab.config import ModelConfig
from looplab.data.batch import IGNORE, Batch, as_batch
from looplab.errors import LooplabError
from looplab.flags import check_settings, setting
from looplab.models.positions import abacus_table, absolute_table, add_absolute


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None  # scalar, mean over supervised tokens
    aux: dict[str, Any] = field(default_factory=dict)  # auxiliary figures, tensors or floats


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over positions whose target is not IGNORE."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def transformer_flops_per_token(n_matmul_params: int, n_attn_layers: int, d_attn: int, seq_len: int) -> int:
    """Training FLOPs per token: 6 per matmul weight (forward + backward) plus attention scores
    and values, 6 * 2 * layers * d * T / 2 averaged over a causal sequence (PaLM appendix B,
    arXiv 2204.02311, with the causal half)."""
    return 6 * n_matmul_params + 6 * n_attn_layers * d_attn * seq_len


class LanguageModel(nn.Module):
    """Common pieces: token embedding, final norm, tied output head, loss."""

    cfg: ModelConfig
    isolates_examples = False  # run() reads `batch.segments` (--packing isolated); build_model sets the registry's `isolates`

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.pos_embed = absolute_table(cfg)  # pos_encoding absolute only
        self.abacus = abacus_table(cfg)  # position_ids abacus only
        self._abacus_ids: torch.Tensor | None = None  # the batch's digit ids while a forward runs

    def forward(self, batch: Batch | torch.Tensor, targets: torch.Tensor | None = None, state: Any = None,
                n_loops: int | None = None) -> ModelOutput:
        """One signature for every variant: a Batch (or token ids and targets), an optional decoding
        state, an optional loop count (looped variants only)."""
        batch = as_batch(batch, targets)
        if n_loops is not None and not isinstance(self, LoopedModel):
            raise LooplabError(f"variant '{self.cfg.variant}' has no loop count; n_loops applies to looped variants")
        if batch.segments is not None and not self.isolates_examples:
            raise LooplabError(f"variant '{self.cfg.variant}' cannot keep packed examples apart; use --packing single")
        with self.reading(batch):
            return self.run(batch, state, n_loops)

    @contextmanager
    def reading(self, batch: Batch) -> Iterator[None]:
        """While a pass over `batch` runs, its abacus digit ids are where `embed_at` reads them: forward,
        and the read-outs that run the model's parts themselves (logits_per_loop, halting_depths)."""
        self._abacus_ids = batch.abacus_ids
        try:
            yield
        finally:
            self._abacus_ids = None

    def run(self, batch: Batch, state: Any, n_loops: int | None) -> ModelOutput:
        raise NotImplementedError

    def embed_at(self, idx: torch.Tensor, start: int, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings of idx (B, T) at positions start..start+T-1, or `ids` (B, T) (the table of
        `absolute`), plus the abacus embedding of the batch's digit ids (required with position_ids abacus)."""
        x = add_absolute(self.embed(idx), self.pos_embed, start, ids)
        if self.abacus is None:
            return x
        digits = self._abacus_ids
        if digits is None or digits.shape != idx.shape:
            raise LooplabError(f"variant {self.cfg.variant} with position_ids abacus needs the batch's abacus_ids "
                               f"for its {tuple(idx.shape)} tokens (eval.decode.rows_batch computes them)")
        return x + self.abacus(digits)

    def output(self, logits: torch.Tensor, targets: torch.Tensor | None, aux: dict[str, Any] | None = None,
               extra_loss: torch.Tensor | None = None) -> ModelOutput:
        loss = None
        if targets is not None:
            loss = lm_loss(logits, targets)
            if extra_loss is not None:
                loss = loss + extra_loss
        return ModelOutput(logits=logits, loss=loss, aux=aux or {})

    def new_state(self, batch: int, max_len: int, *, exact: bool = True) -> Any:
        return None

    def approximate_cache(self) -> bool:
        """Whether `new_state(exact=False)` builds an approximate cache (only speed figures use it)."""
        return False

    @property
    def embedding_params(self) -> int:
        n = self.embed.weight.numel() + sum(t.weight.numel() for t in (self.pos_embed, self.abacus) if t is not None)
        return n if self.cfg.tie_embeddings else n + self.head.weight.numel()

    def cost(self, seq_len: int) -> dict[str, float]:
        """Unique and effective parameters, effective depth and training FLOPs per token.
        Variants that reuse weights override `cost` through `reuse_cost`."""
        return self.reuse_cost(seq_len, reused=0, depth=self.cfg.n_layer)

    def realised_flops_per_token(self, aux: dict[str, Any], seq_len: int) -> float:
        """Training FLOPs per token of the forward that returned `aux`: `cost`, at the loop count that
        forward executed where a looped variant reports one (LoopedModel)."""
        return float(self.cost(seq_len)["flops_per_token"])

    def reuse_cost(self, seq_len: int, *, reused: int, depth: int, n_loops: int | None = None) -> dict[str, float]:
        """The cost entries when `reused` parameter applications come on top of every weight used once:
        effective parameters non-embedding + reused, FLOPs from those plus the head at `depth`."""
        n = count_params(self)
        non_embed = n - self.embedding_params
        effective = non_embed + reused
        out = {
            "params": n,
            "params_non_embedding": non_embed,
            "params_effective": effective,
            "effective_depth": depth,
            "flops_per_token": transformer_flops_per_token(effective + self.head.weight.numel(), depth,
                                                           self.cfg.d_model, seq_len),
        }
        if n_loops is not None:
            out["n_loops"] = n_loops
        return out


@dataclass(frozen=True)
class LengthLoops:
    """Loops that grow with the input: round(per_length * length + offset), clipped to [1, cap], where
    length is the task's length (bits, digits, letters), as Fan et al. run n steps for n-bit parity
    (arXiv 2409.15647). Training runs each row at its example's count (per-row masks: a row stops
    changing after its last loop) and evaluation runs each (task, length) cell at its count."""

    per_length: float
    offset: float
    cap: int

    def count(self, length: int) -> int:
        return int(self.counts(torch.tensor([length]))[0])

    def counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """Per-row counts (B,) for per-row lengths (B,)."""
        return (self.per_length * lengths.float() + self.offset).round().clamp(1, self.cap).long()


@dataclass(frozen=True, kw_only=True)
class LengthLoopOptions:
    """The options of a variant whose loop count may grow with the input (shared_loop, prc)."""

    loops_per_length: float = setting(0.0, "a in loops = round(a * length + b); 0: the fixed count n_loops",
                                      range=">= 0")
    loops_offset: float = setting(0.0, "b in loops = round(a * length + b)")
    loops_cap: int = setting(64, "the most loops any input gets", range=">= 1")

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def length_policy(self) -> LengthLoops | None:
        if not self.loops_per_length:
            return None
        return LengthLoops(float(self.loops_per_length), float(self.loops_offset), int(self.loops_cap))


class LoopedModel(LanguageModel):
    """A language model whose shared core runs a variable number of loops.

    `n_loops` is the count it is trained with; `with_loops(n)` sets another count for every call
    inside the block (test-time compute), and an explicit `forward(..., n_loops=n)` wins over both.
    A model with a `length_policy` (LengthLoops) runs a count that grows with the input's length
    instead: per row in training (`batch.lengths`), per cell at evaluation.
    """

    length_policy: LengthLoops | None = None

    def __init__(self, cfg: ModelConfig, n_loops: int) -> None:
        super().__init__(cfg)
        self.n_loops = check_loops(n_loops)
        self._loops_override: int | None = None

    def logits_per_loop(self, batch: Batch | torch.Tensor, max_loops: int) -> list[torch.Tensor]:
        """The logits (B, T, V) of a batch (its position and digit ids with it) after 1, 2, ...,
        max_loops loops (exit criteria read them). This reference runs the model once per count; a
        variant whose loops extend one another overrides it to read every count off one pass."""
        return [self(batch, n_loops=n).logits for n in range(1, max_loops + 1)]

    def loops_for_length(self, length: int) -> int | None:
        """The count the length policy gives inputs of task length `length` (None without a policy)."""
        return self.length_policy.count(length) if self.length_policy is not None else None

    def row_loops(self, lengths: torch.Tensor | None, n_loops: int | None) -> torch.Tensor | None:
        """Per-row counts (B,) for a batch with row lengths, unless a count was set explicitly."""
        if lengths is None or self.length_policy is None or n_loops is not None or self._loops_override:
            return None
        return self.length_policy.counts(lengths.to(self.embed.weight.device))

    def loops(self, n_loops: int | None = None) -> int:
        """The loop count a call runs with: explicit argument, then `with_loops`, then trained."""
        if n_loops is not None:
            return check_loops(n_loops)
        return self._loops_override or self.n_loops

    def realised_flops_per_token(self, aux: dict[str, Any], seq_len: int) -> float:
        """`cost` at aux `loops_run`, the count the forward executed (`loop_figures`), else at the trained one."""
        if "loops_run" not in aux:
            return super().realised_flops_per_token(aux, seq_len)
        with self.with_loops(int(aux["loops_run"])):
            return float(self.cost(seq_len)["flops_per_token"])

    @contextmanager
    def with_loops(self, n_loops: int) -> Iterator[LoopedModel]:
        previous, self._loops_override = self._loops_override, check_loops(n_loops)
        try:
            yield self
        finally:
            self._loops_override = previous


def check_loops(n_loops: int) -> int:
    if not isinstance(n_loops, int) or isinstance(n_loops, bool) or n_loops < 1:
        raise LooplabError(f"n_loops must be a positive integer, got {n_loops!r}")
    return n_loops


def loop_figures(n_loops: int, counts: torch.Tensor | None = None) -> dict[str, float]:
    """The aux entries of a forward that ran `n_loops` loops: `loops_run`, what it executed (with per-row
    counts, the batch's largest: every row runs it, masked_update only discards a finished row's update),
    and with per-row counts (B,) `loops_mean`, their mean (what the rows needed)."""
    out = {"loops_run": float(n_loops)}
    if counts is not None:
        out["loops_mean"] = float(counts.float().mean())
    return out


def masked_update(x: torch.Tensor, new: torch.Tensor, loop: int, counts: torch.Tensor | None) -> torch.Tensor:
    """new where the row still runs at `loop` (loop < its count), x where it has stopped; new when counts is None."""
    if counts is None:
        return new
    return torch.where((loop < counts).view(-1, *([1] * (x.dim() - 1))), new, x)


def loops_context(model: nn.Module, n_loops: int | None) -> AbstractContextManager:
    """`model.with_loops(n_loops)` for a looped model, nothing for None; any other model is an error."""
    if n_loops is None:
        return nullcontext()
    if not isinstance(model, LoopedModel):
        raise LooplabError(f"variant '{model.cfg.variant}' has no loop count; n_loops applies to looped variants")
    return model.with_loops(n_loops)
