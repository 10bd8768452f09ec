"""The import contracts of pyproject's `[tool.importlinter]` (run by `make lint` as `lint-imports`), checked here with
the standard library too, so `make test` enforces them where import-linter is not installed: the layers of
ARCHITECTURE.md (`grace_rl` -> `reward` -> `rollout`, never upward) and no import cycle between our modules. Every
import statement counts, also one inside a function or under `TYPE_CHECKING`: moving an import into a function hides a
cycle from Python, not from the design."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("grace_rl", "reward", "rollout")
LAYERS = ("grace_rl", "reward", "rollout")  # a package may import only from the ones after it


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of PACKAGES it imports (any import statement anywhere in the file)."""
    files = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def ours(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets |= {base} | {f"{base}.{a.name}" for a in node.names}
        graph[module] = {t for t in map(ours, targets) if t and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """`importer -> imported` for every import from a higher layer."""
    layer = {name: i for i, name in enumerate(LAYERS)}
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        for t in targets
        if layer[t.split(".")[0]] < layer[m.split(".")[0]]
    )


def test_no_import_cycles():
    assert cycles(import_graph()) == [], "break each cycle by moving what both sides need into a module below them"


def test_no_upward_imports():
    assert upward_imports(import_graph()) == [], f"the layers are {' -> '.join(LAYERS)} (ARCHITECTURE.md)"


def test_the_checks_see_a_cycle_and_an_upward_import_hidden_in_functions(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "grace_rl" / "a.py").write_text("def f():\n    from grace_rl.b import g\n")
    (tmp_path / "grace_rl" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    (tmp_path / "rollout" / "c.py").write_text("def h():\n    import grace_rl.a\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["grace_rl.a", "grace_rl.b"]]
    assert upward_imports(graph) == ["rollout.c -> grace_rl.a"]
