"""The package's shape: its modules import each other one way, TYPE_CHECKING imports included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pymysqlpool_registry"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules *path* imports, anywhere in it (TYPE_CHECKING blocks too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return (found & modules) - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(graph[node]):
            if target in path:
                cycle = path[path.index(target) :]
                if not any(set(cycle) == set(seen) for seen in found):
                    found.append(cycle)
            elif target not in done:
                visit(target, [*path, target])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return found


def test_the_import_graph_has_no_cycle() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    graph = {module_name(path): imports(path, modules) for path in paths}
    assert graph["pymysqlpool_registry.pool"], "the walk found no imports: it is broken"
    assert "pymysqlpool_registry.connection" in graph["pymysqlpool_registry.hookspecs"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


#: "No module over about 450 lines, no class over about 350" (issue 16), with the slack
#: "about" allows for a class.
MAX_MODULE_LINES, MAX_CLASS_LINES = 450, 375


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    """Lines per package module, and per class (``module.Class``)."""
    modules, classes = {}, {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        name = module_name(path)
        modules[name] = len(source.splitlines())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                classes[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    return modules, classes


def test_no_module_or_class_is_too_big_to_read() -> None:
    modules, classes = sizes()
    assert classes["pymysqlpool_registry.pool.ConnectionPool"] > 100, "the walk is broken"
    assert {m: n for m, n in modules.items() if n > MAX_MODULE_LINES} == {}
    assert {c: n for c, n in classes.items() if n > MAX_CLASS_LINES} == {}
