"""What every stream yields and every model's forward reads: a `Batch` of rows and their facts.

A batch is the tokens (B, T), the targets (B, T) with IGNORE where there is no loss, and the facts
about each row that some models need and the others ignore: the task length of its example(s)
(which sets the loop count of a model whose loops grow with the input) and, for packed examples
kept apart (`--packing isolated`), each token's example and position within it (`Segments`), and
position ids the data supplies (`coupled` positions, `abacus` digit ids; looplab.data.digit_ids).
Training, validation and evaluation build the same type; a model reads what it needs, so no fact
travels beside the tokens through attributes or probing.

Letters: B rows, T tokens per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # a target with no loss (padding, prompts when the loss is on answers only)


@dataclass(frozen=True)
class Segments:
    """Examples packed back to back in one row and kept apart (`--packing isolated`): each token's
    example (B, T), and its position within that example (B, T). Attention reads only earlier tokens
    of the same example and positions restart at 0 with every example, so a packed row computes what
    its examples would compute one by one."""

    ids: torch.Tensor  # (B, T) example index within the row (padding is an example of its own)
    positions: torch.Tensor  # (B, T) 0, 1, ... within each example

    @property
    def mask(self) -> torch.Tensor:
        """(B, 1, T, T): query t may read key s <= t of its own example."""
        T = self.ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=self.ids.device).tril()
        return (self.ids[:, None, :, None] == self.ids[:, None, None, :]) & causal

    def to(self, device: torch.device | str) -> Segments:
        return Segments(self.ids.to(device, non_blocking=True), self.positions.to(device, non_blocking=True))

    def rows(self, sl: slice) -> Segments:
        return Segments(self.ids[sl], self.positions[sl])


@dataclass(frozen=True)
class Batch:
    """Rows of tokens with their targets and per-row facts; `.to(device)` and `.rows(slice)` keep
    them together."""

    tokens: torch.Tensor  # (B, T) int64
    targets: torch.Tensor | None = None  # (B, T) int64 (rlf: one per loop), IGNORE where no loss; None: no loss
    lengths: torch.Tensor | None = None  # (B,) task length of each row (the largest of its examples)
    segments: Segments | None = None  # packed examples kept apart; None: one sequence per row
    position_ids: torch.Tensor | None = None  # (B, T) positions the data supplies (coupled digit ids); None: plain
    abacus_ids: torch.Tensor | None = None  # (B, T) each digit's significance (abacus embedding); None: none

    def __post_init__(self) -> None:
        B = self.tokens.shape[0]
        for name, value in (("targets", self.targets), ("lengths", self.lengths)):
            if value is not None and value.shape[0] != B:
                raise ValueError(f"batch {name} have {value.shape[0]} rows, tokens {B}")

    @property
    def loss_mask(self) -> torch.Tensor | None:
        """(B, T) True where a target carries loss; None without targets."""
        return None if self.targets is None else self.targets != IGNORE

    @property
    def positions(self) -> torch.Tensor | None:
        """(B, T) each token's position: supplied by the data (coupled digit ids), else within its
        example; None: positions run along the row."""
        if self.position_ids is not None:
            return self.position_ids
        return None if self.segments is None else self.segments.positions

    @property
    def mask(self) -> torch.Tensor | None:
        """(B, 1, T, T) which keys each query may read; None: the causal mask."""
        return None if self.segments is None else self.segments.mask

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.tokens), move(self.targets), move(self.lengths),
                     None if self.segments is None else self.segments.to(device), move(self.position_ids),
                     move(self.abacus_ids))

    def rows(self, sl: slice) -> Batch:
        """The rows `sl` of every part (a micro-batch, or one rank's share)."""
        def part(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[sl]

        return Batch(self.tokens[sl], part(self.targets), part(self.lengths),
                     None if self.segments is None else self.segments.rows(sl), part(self.position_ids),
                     part(self.abacus_ids))


def as_batch(x: Batch | torch.Tensor, targets: torch.Tensor | None = None) -> Batch:
    """A forward's input as a Batch: a Batch as given, or token ids (B, T) with optional targets."""
    if isinstance(x, Batch):
        if targets is not None:
            raise ValueError("targets travel inside the Batch; do not pass them again")
        return x
    return Batch(x, targets)
