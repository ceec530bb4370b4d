"""GPU checks (marked `gpu`, skipped without CUDA): every variant trains under bf16 autocast on the
device, cached decoding equals recomputation there, and `train.py --device cuda` runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from looplab.eval.decode import greedy, greedy_reference
from tests.helpers import GENERIC, V, tiny_model
from tests.test_cli import REPO

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("variant", GENERIC)
def test_bf16_training_step_on_gpu(variant):
    model = tiny_model(variant).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randint(0, V, (4, 65), device="cuda")
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x[:, :-1], x[:, 1:]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("variant", GENERIC)
def test_cached_decoding_equals_recomputation_on_gpu(variant):
    model = tiny_model(variant).cuda()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, V, (n,), generator=g).tolist() for n in (5, 9, 9, 14)]
    with torch.no_grad():
        fast = greedy(model, prompts, max_new_tokens=12, eos_id=-1)
    slow = greedy_reference(model, prompts, max_new_tokens=12, eos_id=-1)
    assert fast == slow


def test_train_script_on_cuda(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--device", "cuda", "--model_size", "tiny", "--alg_tasks", "copy",
         "--alg_tokens", "20480", "--seq_len", "64", "--batch_size", "16", "--eval_samples", "8",
         "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runtime"]["device"].startswith("cuda")
    assert summary["tokens"] >= 20480
