from __future__ import annotations

import pytest

from looplab.config import TrainConfig
from looplab.errors import LooplabError
from looplab.models import create_model
from looplab.train.optim import lr_at, make_optimizer


def test_schedule_warmup_then_cosine():
    cfg = TrainConfig(total_tokens=100 * 256 * 4, alg_tokens=100 * 256 * 4, seq_len=256, batch_size=4,
                      warmup_tokens=10 * 256 * 4, lr=1e-3, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.total_steps)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)


def test_no_decay_on_norms_and_embeddings():
    m = create_model("baseline", "tiny", 260)
    opt = make_optimizer(m, TrainConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert any(p is m.embed.weight for p in no_decay["params"])
    assert all(p.dim() >= 2 for p in decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in m.parameters())  # tied weights counted once


@pytest.mark.parametrize("kw, match", [
    (dict(alg_tokens=10, total_tokens=5), "larger than --total_tokens"),
    (dict(total_tokens=-1), "must be positive"),
    (dict(alg_tokens=10, total_tokens=100, seq_len=64, batch_size=4), "smaller than one batch"),
    (dict(device="tpu"), "allowed: auto, cpu, cuda"),
])
def test_train_config_validation(kw, match):
    with pytest.raises(LooplabError, match=match):
        TrainConfig(**kw)


