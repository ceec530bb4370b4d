"""`train.py --variant rlf` end to end on a tiny base, then `looplab probe`: artefacts and figures."""

from __future__ import annotations

import json

import pytest
import torch

from looplab.checkpoint import load_checkpoint, save_checkpoint
from looplab.data.tokenizer import ByteTokenizer
from looplab.eval.probe import gate_figures, nearest_centroid, score, silhouette
from looplab.models import create_model
from looplab.models.rlf import Trace


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from looplab.cli import main

    tmp = tmp_path_factory.mktemp("rlf")
    torch.manual_seed(0)
    base = create_model("baseline", "tiny", 260, d_model=32, n_layer=2, n_head=2, n_kv_head=2)
    save_checkpoint(tmp / "base.pt", base, ByteTokenizer())
    rc = main(["train", "--variant", "rlf", "--base", str(tmp / "base.pt"), "--output_dir", str(tmp / "run"),
               "--seq_len", "45", "--batch_size", "8", "--alg_tokens", str(45 * 8 * 4), "--eval_samples", "8",
               "--threads", "1", "--no_progress", "--model_opt", "max_loops=14"])
    assert rc == 0
    return tmp / "run"


def test_training_writes_the_usual_artefacts(run_dir):
    for name in ("best_model.pt", "last_model.pt", "config.json", "metrics.json", "summary.json", "loss.png"):
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["variant"] == "rlf" and summary["steps"] == 4
    assert set(summary["final_eval"]["hops"]) == {"1", "2", "3", "4", "5", "6", "8", "10", "12"}
    assert all(r["n"] == 200 for r in summary["final_eval"]["hops"].values())
    assert summary["cost"]["adapt_top_layers"] == 0 and summary["cost"]["params_trainable"] > 0
    ck = load_checkpoint(run_dir / "best_model.pt")
    assert ck.config.variant == "rlf" and ck.config.options["max_loops"] == 14
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["options"]["base_config"]["kind"] == "looplab"


def test_probe_writes_every_figure(run_dir, tmp_path, capsys):
    from looplab.cli import main

    assert main(["probe", str(run_dir / "best_model.pt"), "--out", str(tmp_path / "p"), "--samples", "12",
                 "--threads", "1"]) == 0
    assert "accuracy by hops" in capsys.readouterr().out
    r = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert set(r["accuracy"]) == {"1", "2", "3", "4", "5", "6", "8", "10", "12"}
    assert all(v["n"] == 12 for v in r["accuracy"].values())
    assert 0 <= r["hidden_states"]["pca_var_explained_2"] <= 1 and r["hidden_states"]["points"] == 12 * 6
    assert set(r["ablation"]) == {"zero", "noise", "shuffle"}
    assert set(r["ablation"]["zero"]["agreement_per_loop"]) == {str(i) for i in range(1, 14)}
    assert len(r["trajectory"]["intact"]["xy"][0]) == 10 and len(r["trajectory"]["zero"]["top1"][0]) == 10
    for png in ("accuracy_by_hop", "hidden_states_pca", "gate", "ablation", "trajectory"):
        assert (tmp_path / "p" / f"{png}.png").stat().st_size > 0


def test_probe_refuses_other_variants(tmp_path, capsys):
    from looplab.cli import main

    save_checkpoint(tmp_path / "b.pt", create_model("baseline", "tiny", 260, d_model=32, n_layer=1), ByteTokenizer())
    assert main(["probe", str(tmp_path / "b.pt"), "--out", str(tmp_path / "p")]) == 2
    assert "probe reads rlf checkpoints" in capsys.readouterr().err


def test_score_by_hand():
    H = 9  # HALT
    preds = torch.tensor([[1, 2, H, H], [1, 3, H, H], [H, H, H, H], [1, 2, 2, 2]])
    tr = Trace(logits=torch.zeros(4, 4, 10), preds=preds, halted_at=torch.tensor([3, 3, 1, 0]),
               states=torch.zeros(4, 4, 2))
    targets = torch.tensor([[1, 2, H]] * 4)
    s = score(tr, targets, hops=2)
    assert s["acc"] == 0.5 and s["trace_acc"] == 0.25  # rows 0 and 3 end on 2; only row 0 halts right
    assert s["halt_exact"] == 0.5 and s["halt_at_1"] == 0.25 and s["no_halt"] == 0.25


def test_clustering_figures():
    torch.manual_seed(0)
    labels = torch.arange(3).repeat(20)
    tight = torch.eye(3)[labels] * 10 + 0.01 * torch.randn(60, 3)
    train = torch.arange(60) < 30
    assert nearest_centroid(tight, labels, train) == 1.0 and silhouette(tight, labels) > 0.9
    assert abs(silhouette(torch.randn(60, 3), labels)) < 0.2


def test_gate_shares():
    class M:
        gate = torch.tensor([1.5, 1.0, 0.5, -0.2])

        class opts:
            gate_init = 1.0

    g = gate_figures(M())
    assert g["amplify_share"] == 0.25 and g["suppress_share"] == 0.5 and g["negative_share"] == 0.25


def test_resume_continues_the_chain_stream(run_dir, tmp_path):
    import shutil

    from looplab.cli import main

    shutil.copytree(run_dir, tmp_path / "run")
    base = json.loads((run_dir / "config.json").read_text())["model"]["options"]["base"]
    rc = main(["train", "--variant", "rlf", "--base", base, "--output_dir", str(tmp_path / "run"), "--resume",
               "--seq_len", "45", "--batch_size", "8", "--alg_tokens", str(45 * 8 * 6), "--eval_samples", "8",
               "--threads", "1", "--no_progress", "--model_opt", "max_loops=14"])
    assert rc == 0 and json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 6
