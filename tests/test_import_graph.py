"""No import loops: between the package's modules, and between its folders (subpackages).

The graph is read from the source (``import`` and ``from ... import`` anywhere in a module,
function-level imports included, ``if TYPE_CHECKING:`` blocks left out: they never run).
Importing a submodule is an arrow to that submodule, not to the packages above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "otel_user_tracking"

# Loops that exist today, each with why and what would end it. The tests fail on any other
# loop, and on a listed one that is gone (take it off the list).
KNOWN_MODULE_LOOPS: set[frozenset[str]] = set()
KNOWN_FOLDER_LOOPS: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in (ROOT / PACKAGE).rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    return skipped


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that module ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    targets: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [
                f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES
            ]
            targets += submodules
            if len(submodules) < len(node.names):
                targets.append(module)
    found = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target.startswith(PACKAGE) and target != name:
            found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _loops(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _folder(module: str) -> str | None:
    """The subpackage directly under the package a module belongs to (None for top-level modules)."""
    parts = module.split(".")
    if len(parts) < 2 or not (ROOT / PACKAGE / parts[1]).is_dir():
        return None
    return ".".join(parts[:2])


def _folder_graph() -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for source, targets in GRAPH.items():
        start = _folder(source)
        if start is None:
            continue
        for target in targets:
            end = _folder(target)
            if end is not None and end != start:
                folders.setdefault(start, set()).add(end)
    return folders


def _describe(loops: set[frozenset[str]]) -> list[list[str]]:
    return sorted(sorted(loop) for loop in loops)


def test_no_import_loop_between_modules() -> None:
    """No two modules import each other, directly or through others (beyond the listed ones)."""
    assert _describe(_loops(GRAPH) - KNOWN_MODULE_LOOPS) == []


def test_no_import_loop_between_folders() -> None:
    """No two subpackages import each other, directly or through others (beyond the listed ones)."""
    assert _describe(_loops(_folder_graph()) - KNOWN_FOLDER_LOOPS) == []


def test_every_listed_loop_still_exists() -> None:
    """A loop that was mended leaves the list, so the list says what is left to mend."""
    gone = (KNOWN_MODULE_LOOPS - _loops(GRAPH)) | (KNOWN_FOLDER_LOOPS - _loops(_folder_graph()))
    assert _describe(gone) == []


def test_the_graph_sees_function_level_imports() -> None:
    """An import inside a function is an arrow too: env.py's users would hide a loop there."""
    assert "otel_user_tracking.env" in GRAPH["otel_user_tracking.analytics.processor"]
    assert "otel_user_tracking.env" not in GRAPH["otel_user_tracking.policy"]
