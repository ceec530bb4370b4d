"""Run under `torchrun --nproc_per_node 2`: train every variant three steps with DDP (gloo), then
check that the ranks hold identical weights (the whole run, evaluation and checkpoints included, is
exercised for the baseline by test_distributed.py). Rank 0 writes {variant: {loss, params_equal}} as JSON
to argv[2]. Used by tests/train/test_distributed.py (one launch for all variants keeps CI fast).
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from looplab.checkpoint import save_checkpoint
from looplab.config import TrainConfig, model_config
from looplab.data.tokenizer import ByteTokenizer
from looplab.models import MODELS, create_model
from looplab.models.rlf_base import prepare_base
from looplab.train import parallel as par
from looplab.train.trainer import Trainer


def main() -> None:
    root, report = Path(sys.argv[1]), Path(sys.argv[2])
    world = par.init_world()
    base = root / "base.pt"
    if world.main:
        root.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        save_checkpoint(base, create_model("baseline", "tiny", 260, d_model=32, n_layer=2, n_head=2, n_kv_head=2),
                        ByteTokenizer())
    par.barrier(world)
    results = {}
    for variant in MODELS:
        tok, opts = prepare_base(str(base), None) if variant == "rlf" else (ByteTokenizer(), {})
        cfg = TrainConfig(output_dir=str(root / variant), alg_tokens=3 * 8 * 64, total_tokens=3 * 8 * 64, seq_len=64, batch_size=8,
                          eval_samples=2, eval_every_tokens=10**9, threads=1, progress=False, log_every=1,
                          alg_tasks=("copy",), eval_max_new_tokens=4)
        trainer = Trainer(model_config("tiny", tok.vocab_size, variant, **opts), cfg, tok, world=world)
        loss = [float(par.all_sum(trainer.train_step()["loss"], world)) for _ in range(3)][-1]
        flat = torch.cat([p.detach().flatten().double() for p in trainer.model.parameters()])
        both = [torch.zeros_like(flat) for _ in range(world.size)]
        dist.all_gather(both, flat)
        results[variant] = {"loss": loss, "params_equal": bool(torch.equal(both[0], both[1])),
                            "mode": trainer.mode}
        del trainer, flat, both  # free the DDP reducer while the group lives (as train() does: a
        gc.collect()  # reducer left for interpreter exit can SIGABRT there, pytorch/pytorch#179291)
        print(f"rank {world.rank}: {variant} done", file=sys.stderr, flush=True)
    if world.main:
        report.write_text(json.dumps(results))
    par.barrier(world)
    par.close_world(world)


if __name__ == "__main__":
    main()
