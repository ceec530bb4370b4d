"""How token positions reach a model: the `pos_encoding` setting every attention-based variant shares.

- `rope` (default): rotary embedding of positions start..start+T-1 in every attention layer
  (Su et al., arXiv 2104.09864).
- `nope`: no positions at all; the causal mask alone orders the tokens (Kazemnejad et al.,
  arXiv 2305.19466).
- `absolute`: a learned table added to the token embedding, attention unrotated (GPT-2); the
  `absolute` variant and `nano_baseline.py` are the baseline with this setting.
- `random`: rotary embedding at positions drawn for every sequence as a sorted random subset of
  [0, pos_range), pos_range larger than any length trained or tested, so that every position an
  evaluation uses was seen in training (Ruoss et al., arXiv 2305.16843). Training draws a subset per
  row; evaluation draws one subset per sequence length from a generator seeded by that length, so
  scores are reproducible and do not depend on the batch. Packed examples kept apart draw one
  subset each. Positions are drawn for the whole sequence, so decoding recomputes it (no KV cache) and each step sees a fresh subset, as training
  did.

Letters: B batch, T tokens, D head dim.
"""

from __future__ import annotations

import torch
from torch import nn

from looplab.config import ModelConfig
from looplab.errors import LooplabError
from looplab.models.layers import Rotary

ROTATED = ("rope", "random")  # the encodings that rotate attention's queries and keys

Rope = tuple[torch.Tensor, torch.Tensor] | None  # cos, sin: (T, D/2) or per row (B, T, D/2); None: unrotated


class Positions(nn.Module):
    """The rotary tables of one attention width for the model's `pos_encoding` (None when unrotated)."""

    def __init__(self, cfg: ModelConfig, head_dim: int, extra: int = 0) -> None:
        super().__init__()
        self.kind = cfg.pos_encoding
        self.range = cfg.pos_range or cfg.max_seq_len + extra
        self.rotary = Rotary(head_dim, cfg.max_seq_len + extra, cfg.rope_base) if self.kind in ROTATED else None
        self.supplied = cfg.position_ids == "coupled"  # ids from the data may exceed the row length

    @property
    def cacheable(self) -> bool:
        """Whether decoding may keep keys and values (not with positions redrawn per sequence)."""
        return self.kind != "random"

    def draw(self, batch: int, length: int, device: torch.device, within: torch.Tensor | None = None
             ) -> torch.Tensor | None:
        """Random positions (B or 1, T), sorted, distinct, in [0, range); None unless `random`. With
        `within` (B, T), each token's position inside its packed example (`Segments.positions`), every
        example gets its own sorted subset of its length instead, as it would alone."""
        if self.kind != "random":
            return None
        if within is not None:
            return self.draw_packed(within)
        self.check_fits(length)
        return self.keys(batch, 1, length, device).squeeze(1).topk(length, dim=1).indices.sort(dim=1).values

    def check_fits(self, length: int) -> None:
        if length > self.range:
            raise LooplabError(f"a sequence of {length} tokens does not fit pos_range {self.range} of random "
                               "positions; build the model with a larger pos_range")

    def keys(self, batch: int, examples: int, length: int, device: torch.device) -> torch.Tensor:
        """(B or 1, N, range) uniform keys whose top-L indices are a uniform random L-subset: fresh in
        training; in evaluation one draw per sequence length from a generator seeded by that length."""
        if self.training:
            return torch.rand(batch, examples, self.range, device=device)
        gen = torch.Generator().manual_seed(length)
        return torch.rand(1, examples, self.range, generator=gen).to(device)

    def draw_packed(self, within: torch.Tensor) -> torch.Tensor:
        """(B, T) random positions of packed examples: example n of a row (a run of `within` from 0)
        takes the first L_n members of a random subset (the L_n largest keys: itself a uniform random
        L_n-subset), sorted; tokens take them in order."""
        B, T = within.shape
        longest = int(within.max()) + 1
        self.check_fits(longest)
        example = ((within == 0).cumsum(1) - 1).clamp(min=0)  # (B, T) example index within the row
        n = int(example.max()) + 1
        picked = self.keys(B, n, T, within.device).topk(longest, dim=-1).indices.expand(B, -1, -1)  # (B, N, L)
        size = torch.zeros(B, n, dtype=torch.long, device=within.device).scatter_add_(1, example,
                                                                                      torch.ones_like(example))
        member = torch.arange(longest, device=within.device) < size[..., None]  # (B, N, L)
        ordered = torch.where(member, picked, self.range).sort(dim=-1).values  # members first, ascending
        return ordered.flatten(1).gather(1, example * longest + within)

    def forward(self, start: int, length: int, batch: int = 1, ids: torch.Tensor | None = None) -> Rope:
        """The rotary tables of positions start..start+T-1, or of positions within packed examples
        `ids` (B, T); `random` draws its positions here (per example when `ids` is given); None when
        unrotated."""
        if self.rotary is None:
            return None
        if self.kind == "random":
            if start:
                raise LooplabError("random positions are drawn per sequence and cannot continue a cache")
            ids = self.draw(batch, length, self.rotary.inv_freq.device, within=ids)
        return self.tables(start, length, ids)

    def tables(self, start: int, length: int, ids: torch.Tensor | None) -> Rope:
        """The rotary tables at `ids` (B, T) (random positions already drawn, or positions within packed
        examples, below T), else at start..start+T-1; None when unrotated."""
        if self.rotary is None:
            return None
        if ids is None:
            return self.rotary(start, length)
        if self.kind == "random":
            return self.rotary.at(ids, self.range)
        return self.rotary.at(ids, max(length, int(ids.max()) + 1) if self.supplied else length)


def abacus_table(cfg: ModelConfig) -> nn.Embedding | None:
    """The learned embedding of digit significance (`position_ids` abacus: row 0 for every non-digit
    token, row k for a digit of significance k plus its training offset), N(0, 0.02); None otherwise."""
    if cfg.position_ids != "abacus":
        return None
    table = nn.Embedding(cfg.max_seq_len, cfg.d_model)
    nn.init.normal_(table.weight, 0.0, 0.02)
    return table


def absolute_table(cfg: ModelConfig) -> nn.Embedding | None:
    """The learned position table of `absolute` (max_seq_len rows, N(0, 0.02)); None otherwise."""
    if cfg.pos_encoding != "absolute":
        return None
    table = nn.Embedding(cfg.max_seq_len, cfg.d_model)
    nn.init.normal_(table.weight, 0.0, 0.02)
    return table


def add_absolute(x: torch.Tensor, table: nn.Embedding | None, start: int,
                 ids: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, T, C) plus the table's rows start..start+T-1 (or rows `ids` (B, T), positions within packed
    examples, so below T); a position past the table is an error."""
    if table is None:
        return x
    T, rows = x.shape[1], table.weight.shape[0]
    if start + T > rows:
        raise LooplabError(f"position {start + T - 1} is past the absolute-position table (max_seq_len {rows}); "
                           "build the model with a larger max_seq_len")
    return x + table(ids if ids is not None else torch.arange(start, start + T, device=x.device))
