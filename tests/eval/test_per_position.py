"""scripts/per_position.py: teacher-forced accuracy per answer position agrees with greedy decoding at the
answer's first token, covers every answer token and the stop, and names a bad task in one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from looplab.checkpoint import save_checkpoint
from looplab.data.packing import encode_example
from looplab.data.tasks import TASKS
from looplab.data.tokenizer import ByteTokenizer
from looplab.eval.decode import greedy
from tests.helpers import tiny_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "per_position.py"
spec = importlib.util.spec_from_file_location("per_position", SCRIPT)
per_position = importlib.util.module_from_spec(spec)
spec.loader.exec_module(per_position)


@pytest.mark.parametrize("kind", ["plain", "coupled"])
def test_the_first_position_is_greedy_s_first_token(kind):
    tok = ByteTokenizer()
    model = tiny_model("baseline", position_ids=kind)
    width, acc = per_position.per_position(model, tok, "addition_rev", 3, n=200)
    assert width in (4, 5) and len(acc) == width and all(0 <= a <= 1 for a in acc)
    rows = [encode_example(tok, p, t) for p, t in TASKS["addition_rev"].generate(np.random.default_rng(7), 200, 3).texts()]
    kept = [(c, a) for c, a in rows if len(a) == width]
    said = greedy(model, [c for c, _ in kept], max_new_tokens=1, eos_id=tok.eos_id)
    assert acc[0] == pytest.approx(np.mean([s[0] == a[0] for s, (_, a) in zip(said, kept)]))


def test_a_bad_task_or_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model("baseline"), ByteTokenizer())
    for args in (["--task", "nope"], []):
        proc = subprocess.run([sys.executable, str(SCRIPT), str(path if args else tmp_path / "missing.pt"), *args],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
