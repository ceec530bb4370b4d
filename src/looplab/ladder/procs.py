"""Which processes are alive below a ladder (Linux /proc): what the soak and the signal tests check
after stopping one. A zombie (exited, not yet reaped) counts as gone."""

from __future__ import annotations

from pathlib import Path


def _state_and_parent(stat: Path) -> tuple[str, int]:
    fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = _state_and_parent(stat)
        except OSError:
            continue
        if state != "Z":
            parents[int(stat.parent.name)] = parent
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


def alive(pid: int) -> bool:
    try:
        return _state_and_parent(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except OSError:
        return False
