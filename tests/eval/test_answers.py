"""Reading outputs: answer accuracy, well-formedness and exact match on crafted outputs, cell
summaries, the outputs JSONL, and the grid's cells on a real (tiny) model."""

from __future__ import annotations

import pytest

from looplab.data.tokenizer import ByteTokenizer
from looplab.eval import algorithmic
from looplab.eval.answers import Record, cell_summary, read_output, read_outputs, write_outputs
from tests.helpers import tiny_model

TOK = ByteTokenizer()
EOS = TOK.eos_id


def ids(text: str) -> list[int]:
    return TOK.encode(text)


@pytest.mark.parametrize(("output", "answer", "well_formed", "exact", "stop"), [
    (ids("1") + ids("0000000"), True, False, False, "cap"),  # right answer that never stops
    (ids("1") + [EOS], True, True, True, "eos"),  # right answer that stops
    (ids("0") + [EOS], False, True, False, "eos"),  # wrong answer that stops where it should
    (ids("10") + [EOS], False, False, False, "eos"),  # stops one token late: a different answer
    ([EOS], False, False, False, "eos"),  # stops before answering
])
def test_three_readings_of_one_output(output, answer, well_formed, exact, stop):
    r = read_output(output, ids("1"), EOS)
    assert (r.answer, r.well_formed, r.exact, r.stop) == (answer, well_formed, exact, stop)


def test_exact_is_the_old_exact_match():
    """exact == (output == target + EOS) on every crafted case, and implies the other two."""
    target = ids("123")
    for out in (ids("123") + [EOS], ids("123"), ids("1234") + [EOS], ids("124") + [EOS], ids("12") + [EOS],
                ids("1239999"), [EOS]):
        r = read_output(out, target, EOS)
        assert r.exact == (out == target + [EOS])
        assert r.exact == (r.answer and r.well_formed)


def test_diagnostics_against_the_target():
    r = read_output(ids("1204") + [EOS], ids("1234"), EOS)
    assert r.token_acc == 0.75 and r.prefix_acc == 0.5 and r.length_error == 0
    r = read_output(ids("12"), ids("1234"), EOS)  # cut short at the cap
    assert r.token_acc == 0.5 and r.prefix_acc == 0.5 and r.length_error == -2 and not r.answer
    r = read_output(ids("123456"), ids("1234"), EOS)  # runs on past the answer
    assert r.answer and not r.well_formed and r.length_error == 2 and r.prefix_acc == 1.0


def record(target: str, output: list[int]) -> tuple[Record, object]:
    r = read_output(output, ids(target), EOS)
    return Record(task="parity", length=8, index=0, prompt="PAR:0110", target=target, output=TOK.decode(r.written),
                  tokens=r.written, stop=r.stop, answer=r.answer, well_formed=r.well_formed, exact=r.exact), r


def test_cell_summary_counts_stops_and_wrong_answers():
    rows = [record("1", ids("1") + [EOS]), record("1", ids("0") + [EOS]), record("0", ids("00000")),
            record("0", ids("1111")), record("1", ids("0") + [EOS])]
    s = cell_summary([r for r, _ in rows], [x for _, x in rows])
    assert s["acc"] == 0.4 and s["exact"] == 0.2 and s["well_formed"] == 0.6
    assert s["stops"] == {"eos": 3, "cap": 2} and s["outcomes"] == "10100"
    assert s["length_error"] == pytest.approx((0 + 0 + 4 + 3 + 0) / 5)
    assert s["wrong_answers"] == {"0": 2, "1111…": 1}


def test_many_answers_list_no_wrong_answers():
    rows = [record(t, ids("9") + [EOS]) for t in ("12", "34", "56", "78", "90")]
    assert "wrong_answers" not in cell_summary([r for r, _ in rows], [x for _, x in rows])


def test_outputs_round_trip(tmp_path):
    rows = [record("1", ids("1") + [EOS])[0], record("0", ids("0000"))[0]]
    path = tmp_path / "outputs_algorithmic.jsonl"
    write_outputs(path, rows)
    back = read_outputs(path)
    assert [b["output"] for b in back] == ["1", "0000"] and back[1]["stop"] == "cap" and back[0]["exact"]
    assert len(path.read_text().splitlines()) == 2


def test_grid_cells_hold_the_readings_and_the_outputs():
    m = tiny_model("baseline")
    res = algorithmic.run_grid(m, TOK, ["parity"], problems=algorithmic.drawn(3, 0), max_new_tokens=4, keep_outputs=True)
    cell = res["tasks"]["parity"]["lengths"]["8"]
    assert {"acc", "exact", "well_formed", "stops", "length_error", "token_acc", "prefix_acc", "outcomes"} <= set(cell)
    assert cell["exact"] <= cell["acc"] and len(cell["outcomes"]) == cell["n"] == 3
    assert sum(cell["stops"].values()) == 3
    outs = [o for o in res["outputs"] if o["length"] == 8]
    assert [o["index"] for o in outs] == [0, 1, 2]
    assert "".join("1" if o["answer"] else "0" for o in outs) == cell["outcomes"]
    assert "outputs" not in algorithmic.run_grid(m, TOK, ["parity"], problems=algorithmic.drawn(2, 0), max_new_tokens=4)
