"""Per-task curricula: competence moves difficulty, the DAG unlocks in order, state round-trips."""

from __future__ import annotations

import json
import re

import pytest

from looplab.data.curriculum import CURRICULA, build_curriculum
from looplab.data.packing import AlgoStream
from looplab.data.tasks import get_tasks
from looplab.data.tokenizer import ByteTokenizer
from looplab.errors import LooplabError


def probe(cur, solved):
    """A stub accuracy source: tasks in `solved` are always right, the others always wrong."""
    return {n: 1.0 if n in solved else 0.0 for n in cur.active()}


def test_moves_up_on_a_solved_task_and_not_on_a_failed_one():
    cur = build_curriculum("linear", get_tasks(["copy", "addition"]), cooldown=0, min_evals=2)
    assert cur.difficulty("copy") == 1 and cur.difficulty("addition") == 1
    for step in range(1, 11):
        cur.update(step, probe(cur, {"copy"}))
    assert cur.difficulty("copy") == 6  # one level per two probes (min_evals)
    assert cur.difficulty("addition") == 1
    assert [e["event"] for e in cur.events] == ["up"] * 5 and {e["task"] for e in cur.events} == {"copy"}


def test_cooldown_and_falling_back():
    cur = build_curriculum("linear", get_tasks(["copy"]), cooldown=10, min_evals=1, down_evals=1)
    for step in range(1, 25):
        cur.update(step, {"copy": 1.0})
    assert [e["step"] for e in cur.events] == [10, 20]
    for step in range(25, 40):
        cur.update(step, {"copy": 0.0})
    assert cur.events[-1]["event"] == "down" and cur.events[-1]["step"] == 30


def test_falling_back_waits_for_down_evals():
    cur = build_curriculum("linear", get_tasks(["copy"]), cooldown=0, min_evals=1, down_evals=4)
    first = cur.difficulty("copy")
    cur.update(1, {"copy": 1.0})
    raised = cur.difficulty("copy")
    assert raised > first
    for step in range(2, 5):  # three failing probes at the new level: not yet
        cur.update(step, {"copy": 0.0})
    assert cur.difficulty("copy") == raised
    cur.update(5, {"copy": 0.0})
    assert cur.difficulty("copy") == first and cur.events[-1]["event"] == "down"


def test_jitter_mix_and_stream_follow_the_difficulty():
    tasks = get_tasks(["copy", "parity"])
    cur = build_curriculum("linear", tasks, cooldown=0, min_evals=1, jitter=0.2)
    for step in range(1, 4):
        cur.update(step, {"copy": 1.0, "parity": 0.0})
    (lo, hi), probs = cur.length_mix("copy")
    assert (lo, hi) == (1, 4) and probs == pytest.approx([0.2 / 3] * 3 + [0.8])
    tok = ByteTokenizer()
    stream = AlgoStream(tok, tasks, seq_len=128, batch_size=8, seed=0, block_batches=2)
    cur.apply(stream)
    lens = [len(m) for _ in range(2) for row in stream.next_batch().tokens.tolist()
            for m in re.findall(r"CPY:([a-z]+)=", tok.decode(row))]
    assert max(lens) == 4 and 0.6 < lens.count(4) / len(lens) < 0.95
    assert {len(m) for row in stream.next_batch().tokens.tolist() for m in re.findall(r"PAR:([01]+)=", tok.decode(row))} == {1}


def test_dag_unlocks_along_prerequisites():
    tasks = get_tasks(["multiplication", "addition", "successor", "copy", "reverse", "parity"])
    cur = build_curriculum("dag", tasks, patience=2, unlock=0.8, cooldown=100)
    assert sorted(cur.active()) == ["copy", "parity", "successor"]
    assert cur.weights()["addition"] == 0.0
    order = []
    for step in range(1, 10):
        order += [e["task"] for e in cur.update(step, probe(cur, {"successor", "copy", "addition"})) if e["event"] == "unlock"]
    assert order == ["addition", "reverse", "multiplication"]  # reverse needs copy, multiplication needs addition
    assert cur.state["reverse"].unlocked and not cur.state["parity"].competent
    w = cur.weights()  # competent tasks are replayed with the replay share, the frontier gets the rest
    frontier = [n for n, s in cur.state.items() if s.unlocked and not s.competent]
    assert sum(w[n] for n in frontier) == pytest.approx(1 - cur.replay)


def test_dag_ignores_prerequisites_that_are_not_trained():
    cur = build_curriculum("dag", get_tasks(["multiplication", "reverse"]))
    assert sorted(cur.active()) == ["multiplication", "reverse"]


def test_state_round_trip_and_mismatch():
    tasks = get_tasks(["copy", "reverse"])
    cur = build_curriculum("dag", tasks, cooldown=0, min_evals=1, patience=1)
    for step in range(1, 6):
        cur.update(step, probe(cur, {"copy"}))
    state = json.loads(json.dumps(cur.state_dict()))
    twin = build_curriculum("dag", tasks, cooldown=0, min_evals=1, patience=1)
    twin.load_state_dict(state)
    assert twin.state_dict() == cur.state_dict() and twin.active() == cur.active()
    with pytest.raises(LooplabError, match="strategy dag"):
        build_curriculum("linear", tasks).load_state_dict(state)


def test_registry_and_bad_settings():
    assert set(CURRICULA) == {"linear", "dag", "schedule"}
    with pytest.raises(LooplabError, match="allowed: linear, dag, schedule"):
        build_curriculum("spiral", get_tasks(["copy"]))
    with pytest.raises(LooplabError, match="jitter"):
        build_curriculum("linear", get_tasks(["copy"]), jitter=1.5)
