"""Task files: records become tasks the stream samples; malformed records name file and line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from looplab.data.packing import AlgoStream
from looplab.data.task_file import load_task_files, read_records
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from tests.fixtures.make_task_files import write_task_file


def test_records_become_tasks_with_their_own_answers(tmp_path):
    path = write_task_file(tmp_path / "t.jsonl", [2, 3, 5], per_length=20)
    tasks = {t.name: t for t in load_task_files([str(path)])}
    assert set(tasks) == {"sort_letters", "rotate_left"}
    sort = tasks["sort_letters"]
    assert sort.train_lengths == (2, 5) and sort.iid_lengths == (2, 3, 5) and sort.ood_lengths == ()
    for length, expect in ((3, 3), (4, 3), (5, 5)):  # a missing length draws the longest one below it
        for prompt, target in sort.generate(np.random.default_rng(0), 16, length).texts():
            assert len(prompt) == len("SRT:=") + expect and target == "".join(sorted(prompt[4:-1]))
            assert sort.solve(prompt) == target


def test_stream_samples_file_tasks_beside_built_in_ones(tmp_path):
    path = write_task_file(tmp_path / "t.jsonl", [2, 3], per_length=10)
    tok = ByteTokenizer()
    stream = AlgoStream(tok, ["copy", *load_task_files([str(path)])], seq_len=64, batch_size=8, seed=0)
    text = " ".join(tok.decode(row) for row in stream.next_batch().tokens.tolist())
    assert re.search(r"SRT:[a-z]{2,3}=", text) and re.search(r"ROL:[a-z]{2,3}=", text) and "CPY:" in text


@pytest.mark.parametrize("line, needle", [
    ("{oops", r"t.jsonl:2: invalid JSON"),
    ('{"task": "x", "length": 1, "prompt": "a"}', r"t.jsonl:2: missing field 'target'"),
    ('{"task": "x", "length": 0, "prompt": "a", "target": "b"}', r"t.jsonl:2: 'length' must be a positive integer"),
    ('{"task": "x", "length": 1, "prompt": "\\u00e9", "target": "b"}', r"t.jsonl:2: 'prompt' must be ASCII"),
    ('{"task": "bad name", "length": 1, "prompt": "a", "target": "b"}', r"t.jsonl:2: 'task' must be a name"),
    ('{"task": "copy", "length": 1, "prompt": "a", "target": "b"}', r"defines 'copy', which is a built-in task"),
])
def test_malformed_records(tmp_path, line, needle):
    good = json.dumps({"task": "x", "length": 1, "prompt": "a=", "target": "b"})
    path = tmp_path / "t.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(LooplabError, match=needle) as e:
        load_task_files([str(path)])
    assert "\n" not in str(e.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(LooplabError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(LooplabError, match="holds no records"):
        read_records(tmp_path / "empty.jsonl")
    path = write_task_file(tmp_path / "a.jsonl", [2], per_length=2)
    with pytest.raises(LooplabError, match="more than one --task_file"):
        load_task_files([str(path), str(path)])
