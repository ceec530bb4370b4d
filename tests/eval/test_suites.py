"""Every suite on a tiny checkpoint: results written, and valid against results.schema.json."""

from __future__ import annotations

import json
from collections import Counter

import jsonschema
import pytest

from looplab.config import EvalConfig
from looplab.errors import LooplabError
from looplab.eval.answers import read_outputs
from looplab.eval.hub import SUITES, evaluate_checkpoint, summary_lines

SMALL = dict(samples=2, max_new_tokens=6, needle_lengths=(96, 160), needle_depths=(0.0, 0.5, 1.0),
             needle_trials=3, ppl_tokens=300)


def _run(ckpt, tmp_path, suite, **kw):
    cfg = EvalConfig(suite=suite, **{**SMALL, **kw})
    path, doc = evaluate_checkpoint(str(ckpt), cfg, out_dir=str(tmp_path), threads=1)
    assert path.name == f"results_{suite}.json"
    assert json.loads(path.read_text()) == doc
    return doc


@pytest.mark.parametrize("suite", ["algorithmic", "longctx", "ppl", "selftest", "all"])
def test_suite_output_is_valid(suite, tiny_ckpt, lang_file, schema, tmp_path):
    doc = _run(tiny_ckpt, tmp_path, suite, lang_data=str(lang_file))
    jsonschema.validate(doc, schema)
    meta = doc["metadata"]
    assert meta["checkpoint"]["weights_digest"] and meta["suite_versions"]["longctx"] == "longctx-v1"
    assert summary_lines(suite, doc["results"])


def test_all_runs_each_applicable_suite(tiny_ckpt, lang_file, tmp_path):
    res = _run(tiny_ckpt, tmp_path, "all", lang_data=str(lang_file))["results"]
    assert {"algorithmic", "longctx", "ppl", "selftest"} <= set(res)
    assert "custom" in res["skipped"] and "custom" not in res
    assert res["selftest"]["all_pass"], res["selftest"]
    assert res["algorithmic"]["ood_summary"]["probes"]["parity@32"] is not None
    assert res["algorithmic"]["curves"]["passkey"]["lengths"] == [2, 4, 8, 16]


def test_all_skips_ppl_without_text(tiny_ckpt, tmp_path, monkeypatch):
    from looplab.eval import ppl

    monkeypatch.setattr(ppl, "DEFAULT_LANG_DATA", tmp_path / "absent.txt")
    res = _run(tiny_ckpt, tmp_path, "all")["results"]
    assert "ppl" not in res and "--lang_data" in res["skipped"]["ppl"]
    with pytest.raises(LooplabError, match="--lang_data"):
        _run(tiny_ckpt, tmp_path, "ppl")


def test_schema_rejects_a_broken_document(tiny_ckpt, schema, tmp_path):
    doc = _run(tiny_ckpt, tmp_path, "selftest")
    doc["results"]["checks"].pop("solvers")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_registry_names():
    assert {"algorithmic", "longctx", "ppl", "selftest", "all"} <= set(SUITES)


def test_cells_carry_the_floor_of_their_own_problems(tiny_ckpt, tmp_path):
    """The floor is the most frequent answer's share among the cell's problems (1/2 on balanced parity);
    OOD cells hold --ood_samples problems, and the metadata names each cell's digest and size."""
    doc = _run(tiny_ckpt, tmp_path, "algorithmic", tasks=("parity", "passkey"), samples=4, ood_samples=6)
    grid, record = doc["results"], doc["metadata"]["test_set"]
    rows = read_outputs(tmp_path / grid["outputs_file"])
    for task, entry in grid["tasks"].items():
        for n, cell in entry["lengths"].items():
            targets = [r["target"] for r in rows if r["task"] == task and str(r["length"]) == n]
            assert cell["floor"] == max(Counter(targets).values()) / len(targets)
            assert cell["n"] == len(targets) == (4 if cell["split"] == "iid" else 6) == record["cells"][f"{task}_{n}"]["n"]
    assert {c["floor"] for c in grid["tasks"]["parity"]["lengths"].values()} == {0.5}
    assert record["source"] == "generated" and len(record["digest"]) == 64


def test_the_grid_keeps_what_the_model_said(tiny_ckpt, tmp_path):
    """Every decoded example is kept as JSONL beside the results, and the cells agree with it."""
    grid = _run(tiny_ckpt, tmp_path, "algorithmic", tasks=("parity",))["results"]
    rows = read_outputs(tmp_path / grid["outputs_file"])
    cells = grid["tasks"]["parity"]["lengths"]
    assert len(rows) == sum(c["n"] for c in cells.values()) == 5 * SMALL["samples"]
    for n, cell in cells.items():
        mine = [r for r in rows if r["task"] == "parity" and str(r["length"]) == n]
        assert cell["acc"] == sum(r["answer"] for r in mine) / len(mine)
        assert cell["exact"] == sum(r["exact"] for r in mine) / len(mine)
        assert all(isinstance(r["output"], str) and r["stop"] in ("eos", "cap") for r in mine)
    assert "outputs" not in grid


def test_prc_is_scored_exactly_and_its_approximate_cache_only_timed(tmp_path, schema):
    """prc's default cache budget (1 recurrence) is approximate: scores come from exact decoding (equal
    to recomputation, per cell), and the approximate cache appears only as a speed figure."""
    import torch

    from looplab.checkpoint import save_checkpoint
    from looplab.data.tokenizer import ByteTokenizer
    from tests.helpers import tiny_model

    model = tiny_model("prc")
    with torch.no_grad():  # outputs that are not the last prompt token repeated
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "prc.pt"
    save_checkpoint(path, model, ByteTokenizer(), meta={"tasks": ["successor"]})
    cached = _run(path, tmp_path / "a", "algorithmic", samples=4)
    recomputed = _run(path, tmp_path / "b", "algorithmic", samples=4, use_cache=False)
    jsonschema.validate(cached, schema)
    assert cached["results"]["tasks"] == recomputed["results"]["tasks"]
    speed = cached["results"]["approximate_cache"]
    assert speed["exact_tokens_per_s"] > 0 and speed["approximate_tokens_per_s"] > 0 and 0 <= speed["same_output"] <= 1
    assert "approximate_cache" not in recomputed["results"]


def test_an_output_directory_that_cannot_be_written_is_refused_before_scoring(tiny_ckpt, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(LooplabError, match="is not writable"):
        evaluate_checkpoint(str(tiny_ckpt), EvalConfig(suite="algorithmic", **SMALL), out_dir=str(blocker / "out"))
    assert blocker.read_text() == "x"
