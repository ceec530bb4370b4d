from __future__ import annotations

from looplab.config import SIZES
from looplab.data.tokenizer import ByteTokenizer
from looplab.models.sizes import size_rows, size_table


def test_size_rows_real_counts():
    rows = {r["size"]: r for r in size_rows("baseline", 32016)}
    assert list(rows) == list(SIZES)
    # non-embedding parameters grow with d_model^2 * layers; embeddings are vocab * d_model (tied)
    for r in rows.values():
        assert r["params"] - r["params_non_embedding"] == 32016 * r["d_model"]
    assert rows["tiny"]["params"] < rows["micro"]["params"] < rows["nano"]["params"] < rows["125M"]["params"]
    assert 100e6 < rows["125M"]["params"] < 200e6


def test_size_table_mentions_tokenizer():
    table = size_table("baseline", ByteTokenizer())
    assert "vocab 260" in table and "`1B-16k`" in table
