"""The package is layered: infrastructure rooms import nothing of the application, the rooms import each other
without cycles, and data flows one way (files -> DataModule -> LightningModule -> metric -> reports). Read from
the source (every import, including those inside functions), so a late import cannot hide an upward edge."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mdreid"

# below everything: they serve every room and import none of the application
INFRASTRUCTURE = frozenset({"process", "files", "lightning_plugins", "sweeps", "plugins"})
# the rooms of the data flow (files -> DataModule -> LightningModule -> metric -> reports), lowest first: a room
# imports rooms of its own level or below, never one above (the module feeds the metric, the reports read both)
LEVELS = {
    "modalities": 0,
    "data": 1,
    "models": 2,
    "losses": 2,
    "optim": 2,
    "metrics": 2,
    "module": 3,
    "reporting": 4,
}


def room_of(module: str) -> str:
    """``mdreid.data.readers.common`` -> ``data``; a root module is its own room (``mdreid.train`` -> ``train``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mdreid"


def imports(package: Path = PACKAGE, key: Callable[[str], str] = room_of) -> dict[str, set[str]]:
    """``key`` (a room, by default; a module with ``module_of``) -> the others its source imports."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent).with_suffix("")
        here = key(".".join(p for p in rel.parts if p != "__init__"))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "mdreid" else [f"mdreid.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("mdreid.") and key(name) != here:
                    edges[here].add(key(name))
    return edges


def module_of(name: str) -> str:
    return name


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every room cycle found by a depth-first search (each reported once, from where it was entered)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_infrastructure_imports_nothing_of_the_application() -> None:
    edges = imports()
    upward = {
        room: sorted(edges[room] - INFRASTRUCTURE) for room in INFRASTRUCTURE if edges[room] - INFRASTRUCTURE
    }
    assert not upward, upward


def test_modules_import_each_other_without_cycles() -> None:
    assert not cycles(imports(key=module_of))


def test_data_flows_one_way() -> None:
    edges = imports()
    upward = [
        f"{room} imports {other}"
        for room, level in LEVELS.items()
        for other in sorted(edges[room])
        if LEVELS.get(other, -1) > level
    ]
    assert not upward, upward


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    for room, text in {
        "files/io.py": "from mdreid.data.batch import Batch\n",
        "data/batch.py": "def f():\n    from mdreid.module import ReIDModule\n",
        "module.py": "import mdreid.data.batch\n",
    }.items():
        (tmp_path / "mdreid" / room).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mdreid" / room).write_text(text)
    edges = imports(tmp_path / "mdreid")
    assert edges == {"files": {"data"}, "data": {"module"}, "module": {"data"}}
    assert cycles(edges) == [["data", "module", "data"]]
