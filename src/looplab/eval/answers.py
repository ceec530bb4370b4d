"""Scoring what the model answered: each example's output kept, and read three ways.

Greedy decoding writes tokens until EOS or the cap. Exact match asks for the answer followed by
EOS, so a right answer that runs on past its end counts as wrong, and a cell "below chance" may hold
unterminated outputs rather than wrong answers. Each example is therefore read three ways:

- `answer` right: the output up to its first stop token equals the target. An output that never
  stops (the cap) has given no end of its own, so its answer is read at the target's length.
- `well_formed`: the output stops exactly where an answer of the target's length ends (EOS right
  after it, nothing missing), right or wrong.
- `exact`: both; the old exact match (output == target + EOS).

A cell's summary adds the stop reasons (EOS or cap), the mean length error of what was written
before the stop, token and prefix accuracy against the target, and for tasks with few possible
answers (parity, compare, dyck) the most common wrong answers. `Record` is one example as JSONL.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from looplab.io import atomic_write_bytes

SMALL_ANSWER_SET = 4  # a cell whose targets take at most this many values lists its common wrong answers
TOP_WRONG = 3  # how many wrong answers a cell lists
SHOWN = 24  # characters of a wrong answer kept in the summary


@dataclass(frozen=True)
class Reading:
    """One output read against its target (token ids, EOS excluded from both)."""

    written: list[int]  # the output before its first EOS (all of it when it never stops)
    stop: str  # "eos" or "cap"
    answer: bool  # the answer (read at the target's length when the output never stops) is the target
    well_formed: bool  # EOS right after an answer of the target's length
    exact: bool  # output == target + EOS
    length_error: int  # len(written) - len(target)
    token_acc: float  # share of target positions the output has right
    prefix_acc: float  # length of the common prefix over the target's length


def read_output(output: Sequence[int], target: Sequence[int], eos_id: int) -> Reading:
    out, tgt = list(output), list(target)
    stop = "eos" if eos_id in out else "cap"
    written = out[: out.index(eos_id)] if stop == "eos" else out
    answer = written == tgt if stop == "eos" else written[: len(tgt)] == tgt
    well_formed = stop == "eos" and len(written) == len(tgt)
    hits = [a == b for a, b in zip(written, tgt)]
    prefix = hits.index(False) if False in hits else len(hits)
    share = (lambda k: k / len(tgt)) if tgt else (lambda k: 1.0)
    return Reading(written=written, stop=stop, answer=answer, well_formed=well_formed,
                   exact=answer and well_formed, length_error=len(written) - len(tgt),
                   token_acc=share(sum(hits)), prefix_acc=share(prefix))


@dataclass(frozen=True)
class Record:
    """One evaluated example, as written to the outputs JSONL beside a suite's results."""

    task: str
    length: int
    index: int  # the example's position in its cell: the same problem for every model and seed
    prompt: str
    target: str
    output: str  # decoded text before the first EOS
    tokens: list[int]  # the generated ids before the first EOS (special ids the text leaves out included)
    stop: str  # "eos" or "cap"
    answer: bool
    well_formed: bool
    exact: bool
    loops: int | None = None  # the loop count it was decoded at (None: the trained count)


def cell_summary(records: Sequence[Record], readings: Sequence[Reading]) -> dict[str, Any]:
    """A cell's fields beyond `n`: answer accuracy as `acc`, the other readings, the diagnostics, and
    `outcomes`, one character per example ("1" right answer, "0" wrong) in index order."""
    out: dict[str, Any] = {
        "acc": mean(r.answer for r in readings), "exact": mean(r.exact for r in readings),
        "well_formed": mean(r.well_formed for r in readings),
        "stops": dict(Counter(r.stop for r in readings)),
        "length_error": mean(r.length_error for r in readings),
        "token_acc": mean(r.token_acc for r in readings), "prefix_acc": mean(r.prefix_acc for r in readings),
        "outcomes": "".join("1" if r.answer else "0" for r in readings),
    }
    if len({r.target for r in records}) <= SMALL_ANSWER_SET:
        out["wrong_answers"] = dict(Counter(shown(r) for r in records if not r.answer).most_common(TOP_WRONG))
    return out


def mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))


def shown(record: Record) -> str:
    """A wrong answer as a summary lists it; "…" marks an output cut short or never stopped."""
    text = record.output[:SHOWN]
    return text + "…" if record.stop == "cap" or len(record.output) > SHOWN else text


def write_outputs(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> None:
    """One JSON object per line, written atomically (the previous file stays whole on failure)."""
    lines = [json.dumps(asdict(r) if isinstance(r, Record) else r, ensure_ascii=False) for r in records]
    atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode())


def read_outputs(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
