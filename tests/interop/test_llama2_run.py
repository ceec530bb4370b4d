"""A run with the Llama-2 SentencePiece vocabulary trains, evaluates and exports end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LLAMA2 = REPO.parent / "shared" / "data" / "tokenizers" / "llama2_tokenizer.model"


def looplab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "looplab.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


@pytest.mark.skipif(not LLAMA2.is_file(), reason="needs ../shared/data/tokenizers/llama2_tokenizer.model")
def test_llama2_vocabulary_trains_evaluates_and_exports(tmp_path):
    out = tmp_path / "run"
    proc = looplab("train", "--tokenizer", str(LLAMA2), "--model_size", "tiny", "--model_opt", "n_layer=1",
                   "--alg_tokens", "2048", "--alg_tasks", "copy", "--seq_len", "64", "--batch_size", "8",
                   "--eval_every_tokens", "2048", "--eval_samples", "2", "--eval_max_new_tokens", "8",
                   "--threads", "1", "--device", "cpu", "--no_progress", "--output_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"]["name"] == "sentencepiece:llama2_tokenizer.model"
    assert config["model"]["vocab_size"] == 32002  # 32,000 pieces + pad and sep
    proc = looplab("eval", "--checkpoint", str(out / "best_model.pt"), "--suite", "algorithmic", "--samples", "2",
                   "--max_new_tokens", "8", "--threads", "1", "--out_dir", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval" / "results_algorithmic.json").read_text())["results"]["tasks"]["copy"]
    proc = looplab("export", str(out / "best_model.pt"), "--to", "hf", str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.encode("Hello world", add_special_tokens=False) == [15043, 3186]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.sep_token_id) == (1, 2, 32000, 32001)


def test_uncached_hub_tokenizer_is_a_one_line_error(tmp_path):
    proc = looplab("train", "--tokenizer", "someorg/not-cached", "--alg_tokens", "2048", "--seq_len", "64",
                   "--batch_size", "8", "--output_dir", str(tmp_path / "run"), "--no_progress",
                   env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert "someorg/not-cached" in err and "local Hugging Face cache" in err
