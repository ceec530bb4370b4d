"""The size table with real parameter counts, built on the meta device (no memory, no init cost)."""

from __future__ import annotations

from typing import Any

import torch

from looplab.config import SIZES


def size_rows(variant: str, vocab_size: int) -> list[dict[str, Any]]:
    from looplab.models import create_model

    rows = []
    for name, shape in SIZES.items():
        with torch.device("meta"):
            model = create_model(variant, name, vocab_size)
        cost = model.cost(shape["max_seq_len"])
        rows.append({"size": name, **shape, "params": cost["params"],
                     "params_non_embedding": cost["params_non_embedding"]})
    return rows


def size_table(variant: str, tokenizer: Any) -> str:
    lines = [f"variant {variant}, tokenizer {tokenizer.name} (vocab {tokenizer.vocab_size}), tied embeddings",
             "",
             "| size | d_model | layers | heads | kv heads | context | params (total) | params (non-embedding) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in size_rows(variant, tokenizer.vocab_size):
        lines.append(f"| `{r['size']}` | {r['d_model']} | {r['n_layer']} | {r['n_head']} | {r['n_kv_head']} | "
                     f"{r['max_seq_len']} | {r['params'] / 1e6:,.2f}M | {r['params_non_embedding'] / 1e6:,.2f}M |")
    return "\n".join(lines)
