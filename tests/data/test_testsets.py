"""Test sets: balanced where the answers are few, fixed and digested, read back from files, and
independent of every generator a run trains or checks itself with."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from looplab.data.floors import answer_floor
from looplab.data.packing import AlgoStream
from looplab.data.tasks import TASKS
from looplab.data.testsets import (
    DIGESTS,
    TEST_SEED,
    TestSet,
    cell_size,
    generate_cell,
    grid_cells,
    write_test_sets,
)
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError
from looplab.eval.algorithmic import cell_rng, drawn
from looplab.train.data import ALG_VAL_SEED


@pytest.mark.parametrize("name,lengths", [("parity", (4, 8, 32, 64)), ("compare", (1, 2, 8, 16)),
                                          ("dyck", (1, 4, 16, 64))])
@pytest.mark.parametrize("n", [10, 101])
def test_small_answer_sets_are_balanced(name, lengths, n):
    task = TASKS[name]
    for length in lengths:
        pairs = generate_cell(task, length, n)
        counts = Counter(t for _, t in pairs)
        assert set(counts) == set(task.answers) and len(set(counts.values())) == 1, (length, counts)
        assert len(pairs) == cell_size(task, n) >= n and len(pairs) - n < len(task.answers)
        assert all(task.solve(p) == t for p, t in pairs)  # balancing keeps every answer right
        assert answer_floor([t for _, t in pairs]) == pytest.approx(1 / len(task.answers))


def test_a_balanced_cell_is_not_sorted_by_answer():
    targets = "".join(t for _, t in generate_cell(TASKS["parity"], 8, 200))
    assert "01" in targets and "10" in targets and targets.count("0") == 100


def test_cells_are_fixed_and_other_tasks_keep_their_size():
    copy = TASKS["copy"]
    assert generate_cell(copy, 8, 7) == generate_cell(copy, 8, 7) and len(generate_cell(copy, 8, 7)) == 7
    assert generate_cell(copy, 8, 7) != generate_cell(copy, 16, 7)
    assert not copy.answers and cell_size(copy, 7) == 7


def test_files_hold_the_digested_set_and_the_hub_reads_them_back(tmp_path):
    tasks = [TASKS["parity"], TASKS["compare"]]
    doc = write_test_sets(tmp_path, tasks, samples=6, ood_samples=9)
    assert json.loads((tmp_path / DIGESTS).read_text()) == doc and doc["seed"] == TEST_SEED
    for name, digest in doc["cells"].items():
        raw = (tmp_path / f"{name}.jsonl").read_bytes()
        assert hashlib.sha256(raw).hexdigest() == digest
        rows = [json.loads(line) for line in raw.decode().splitlines()]
        assert set(rows[0]) == {"task", "length", "prompt", "target"}  # the --task_file format
    read, made = TestSet(6, 9, tmp_path), TestSet(6, 9)
    for cell in grid_cells(tasks):
        assert read(cell) == made(cell)
        assert len(read(cell)) == cell_size(cell[0], 6 if cell[2] == "iid" else 9)
    assert read.record()["digest"] == made.record()["digest"] == doc["digest"]
    assert write_test_sets(tmp_path, tasks, samples=6, ood_samples=9) == doc  # a second write changes nothing
    with pytest.raises(LooplabError, match="another test set"):
        write_test_sets(tmp_path, tasks, samples=8, ood_samples=9)


def test_a_changed_or_missing_file_is_refused(tmp_path):
    write_test_sets(tmp_path, [TASKS["parity"]], samples=4, ood_samples=4)
    cell = grid_cells([TASKS["parity"]])[0]
    with pytest.raises(LooplabError, match="asks for 6"):
        TestSet(6, 4, tmp_path)(cell)
    with pytest.raises(LooplabError, match="no cell copy_4"):
        TestSet(4, 4, tmp_path)(grid_cells([TASKS["copy"]])[0])
    path = tmp_path / "parity_4.jsonl"
    path.write_text(path.read_text().replace('"target": "0"', '"target": "1"', 1))
    with pytest.raises(LooplabError, match="does not match its digest"):
        TestSet(4, 4, tmp_path)(cell)
    with pytest.raises(LooplabError, match="no DIGESTS.json"):
        TestSet(4, 4, tmp_path / "absent")


def test_the_test_set_shares_no_problem_with_training_or_checks():
    """Copy, reverse and addition cells have 26^8 or 9000^2 problems: any shared prompt between the test
    set and what seeds 0..4 train on (the stream), validate on (ALG_VAL_SEED) or check with (periodic and
    final evaluation: cell_rng(seed + 1), cell_rng(seed + 2)) would mean a shared generator."""
    names, cells = ("copy", "reverse", "addition"), [(TASKS["copy"], 8, "iid"), (TASKS["reverse"], 8, "iid"),
                                                     (TASKS["addition"], 4, "iid")]
    test = {p for cell in cells for p, _ in generate_cell(cell[0], cell[1], 500)}
    tok, seen = ByteTokenizer(), set()
    for seed in (*range(5), ALG_VAL_SEED):
        stream = AlgoStream(tok, list(names), seq_len=32, batch_size=64, seed=seed, loss_on="answer", packing="single")
        for _ in range(20):
            seen |= {tok.decode(row.tolist()).split("=")[0] + "=" for row in stream.next_batch().tokens}
        for k in (1, 2):
            seen |= {p for cell in cells for p, _ in drawn(500, seed + k)(cell)}
    assert len(seen) > 15_000 and {p[:4] for p in seen} == {"CPY:", "REV:", "ADD:"}
    assert test.isdisjoint(seen)


def test_no_check_draws_from_the_test_seed():
    with pytest.raises(LooplabError, match="test sets' seed"):
        cell_rng(TEST_SEED, "parity", 8)
    assert TEST_SEED not in (ALG_VAL_SEED, 1234) and TEST_SEED > 10**6


def test_the_generator_floor_agrees_with_the_answer_share_on_a_large_draw():
    """chance_floor (older results without a floor of their own) estimates what answer_floor computes on
    a test cell: parity near 1/2, compare near its commonest answer's share; a task copied out of the
    registry is estimated the same way without the cache."""
    import dataclasses

    from looplab.data.floors import answer_floor, chance_floor, normalised
    from looplab.data.tasks import TASKS

    assert abs(chance_floor(TASKS["parity"], 16) - 0.5) < 0.03
    copy = dataclasses.replace(TASKS["parity"])
    assert chance_floor(copy, 16) == chance_floor(TASKS["parity"], 16)
    assert answer_floor(["1", "0", "1", "1"]) == 0.75 and answer_floor([]) == 0.0
    assert normalised(0.75, 0.5) == 0.5 and normalised(1.0, 1.0) == 0.0
