"""The package's imports point down the declared layers and form no cycle, function-local imports included.

Every `import looplab...` / `from looplab... import` statement anywhere in a module (top level, in a
function, under TYPE_CHECKING) is an edge from that module to the module it names (for
`from a.b import c`, to `a.b.c` when that is a module, else to `a.b`). A cycle is a strongly
connected component of more than one module; the failure message lists each with its edges.

The layers, bottom to top (../shared/STYLE.md): an edge may stay within a layer or point to a lower
one, never up. `LAYERS` places every module by its first name under `looplab`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "looplab"

# bottom to top; a module's layer is that of its first name under looplab (looplab.data.batch -> data)
LAYERS: list[set[str]] = [
    {"errors", "io", "runtime", "flags", "meta"},
    {"config"},
    {"data"},
    {"models"},
    {"checkpoint"},
    {"eval"},
    {"train", "interop"},
    {"ladder"},
    {"cli", "commands", "demo", "looplab"},  # the command line, and the package's own __init__
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"module {module} has no declared layer; add '{name}' to LAYERS")


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points to a higher layer than its module's, as 'a (layer) -> b (layer)'."""
    return sorted(f"{a} ({layer_of(a)}) -> {b} ({layer_of(b)})" for a, edges in graph.items() for b in edges
                  if layer_of(b) > layer_of(a))


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)

    def known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {known(a.name) for a in node.names if a.name.split(".")[0] == "looplab"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                if base.split(".")[0] == "looplab":
                    edges |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else known(base) for a in node.names}
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next((e for e in edges if e not in index or e in on_stack), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                else:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(component)))}" for m in component)


def test_the_detector_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_local_imports(tmp_path):
    pkg = tmp_path / "looplab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "top.py").write_text("def f():\n    from looplab.sub import low\n")
    (pkg / "sub" / "low.py").write_text("from .. import top\n")
    graph = import_graph(pkg)
    assert graph["looplab.top"] == {"looplab.sub.low"} and graph["looplab.sub.low"] == {"looplab.top"}
    assert cycles(graph) == [["looplab.sub.low", "looplab.top"]]


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(describe(graph, c) for c in found)


def test_config_and_the_bottom_layer_import_nothing_above_them():
    graph = import_graph(PACKAGE)
    bottom = {"looplab.errors", "looplab.flags", "looplab.io"}
    for name in bottom:
        assert graph[name] <= bottom, (name, graph[name] - bottom)
    assert graph["looplab.config"] <= bottom, graph["looplab.config"] - bottom


def test_every_import_points_down_the_layers():
    graph = import_graph(PACKAGE)
    found = upward_edges(graph)
    assert not found, "imports that point up the layers: " + "; ".join(found)


def test_the_layer_check_catches_a_planted_upward_import(tmp_path):
    """A copy of the package with one function-local import from data up to train fails the check."""
    import shutil

    copy = tmp_path / "looplab"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not upward_edges(import_graph(copy))
    batch = copy / "data" / "batch.py"
    batch.write_text(batch.read_text() + "\n\ndef _planted():\n    from looplab.train import trainer\n")
    assert upward_edges(import_graph(copy)) == ["looplab.data.batch (2) -> looplab.train.trainer (6)"]
