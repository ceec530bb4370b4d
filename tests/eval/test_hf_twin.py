"""The transformers Llama twin used by bench/bench_decode.py holds exactly the baseline's function."""

from __future__ import annotations

import pytest
import torch

from looplab.errors import LooplabError
from looplab.eval.decode import greedy
from looplab.eval.hf_twin import llama_twin
from tests.helpers import tiny_model

pytest.importorskip("transformers")


@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 2, "tie_embeddings": False}])
def test_same_logits_and_greedy_tokens(kw):
    model = tiny_model("baseline", **kw)
    twin = llama_twin(model)
    x = torch.randint(0, 256, (2, 19))
    with torch.no_grad():
        torch.testing.assert_close(twin(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)
        out = twin.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6, min_new_tokens=6,
                            do_sample=False, eos_token_id=None, pad_token_id=0)
    assert out[:, 19:].tolist() == greedy(model, x.tolist(), max_new_tokens=6, eos_id=-1)


def test_only_the_baseline_has_a_twin():
    with pytest.raises(LooplabError, match="only for variant 'baseline'"):
        llama_twin(tiny_model("shared_loop"))
