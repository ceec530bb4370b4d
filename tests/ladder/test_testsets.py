"""A ladder scores every run on one test set, written once to testsets/, and a lone hub run gets the same."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from looplab.config import EvalConfig
from looplab.data.testsets import DIGESTS
from looplab.errors import LooplabError
from looplab.eval.answers import read_outputs
from looplab.eval.hub import evaluate_checkpoint
from looplab.ladder import LadderPreset, run_ladder

SETS = dict(samples=4, ood_samples=6)
ONE = LadderPreset(
    name="one", note="test preset", size="tiny",
    train=dict(alg_tasks=("parity",), alg_tokens=512, total_tokens=512, seq_len=32, batch_size=8,
               warmup_tokens=128, eval_every_tokens=256, eval_samples=2),
    evaluation=dict(suite="algorithmic", **SETS), n_loops=(), threads=1,
)


def results(out: Path, seed: int) -> dict:
    return json.loads((out / f"runs/baseline_s{seed}/eval_results/results_algorithmic.json").read_text())


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ladder")
    run_ladder(ONE, variants=["baseline"], seeds=2, out=str(out), stream=io.StringIO())
    return out


def test_every_run_of_a_ladder_is_scored_on_the_written_set(two_seeds):
    written = json.loads((two_seeds / "testsets" / DIGESTS).read_text())
    assert sorted(written["cells"]) == ["parity_16", "parity_32", "parity_4", "parity_64", "parity_8"]
    records = [results(two_seeds, s)["metadata"]["test_set"] for s in (0, 1)]
    assert records[0]["digest"] == records[1]["digest"] == written["digest"]
    assert {n: c["digest"] for n, c in records[0]["cells"].items()} == written["cells"]
    assert records[0]["source"] == "../../../testsets"  # relative to eval_results/: the ladder stays movable
    ladder_doc = json.loads((two_seeds / "ladder.json").read_text())
    assert {r["test_set"] for r in ladder_doc["runs"].values()} == {written["digest"]}


def test_a_lone_hub_run_gets_the_same_problems(two_seeds, tmp_path):
    ckpt = two_seeds / "runs/baseline_s0/best_model.pt"
    _, doc = evaluate_checkpoint(str(ckpt), EvalConfig(suite="algorithmic", **SETS), out_dir=str(tmp_path), threads=1)
    assert doc["metadata"]["test_set"]["source"] == "generated"
    assert doc["metadata"]["test_set"]["digest"] == results(two_seeds, 0)["metadata"]["test_set"]["digest"]
    ladder_rows = read_outputs(two_seeds / "runs/baseline_s0/eval_results/outputs_algorithmic.jsonl")
    lone_rows = read_outputs(tmp_path / "outputs_algorithmic.jsonl")
    assert [(r["prompt"], r["target"]) for r in lone_rows] == [(r["prompt"], r["target"]) for r in ladder_rows]


def test_results_of_another_test_set_are_refused(two_seeds):
    path = two_seeds / "runs/baseline_s1/eval_results/results_algorithmic.json"
    doc = json.loads(path.read_text())
    doc["metadata"]["test_set"]["digest"] = "0" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(LooplabError, match="different test sets"):
        run_ladder(ONE, variants=["baseline"], seeds=2, out=str(two_seeds), stream=io.StringIO())


def test_answer_presets_score_enough_problems():
    from looplab.ladder import PRESETS

    for name in ("cpu", "axes", "parity_ssm"):
        cfg = PRESETS[name].eval_config(False)
        assert cfg.samples >= 500 and cfg.ood_count >= 1000, name
    assert PRESETS["smoke"].eval_config(False).ood_count <= 100  # the demo stays quick
