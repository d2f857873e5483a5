"""The import graph of `syncd.*`, read with `ast` (nothing is imported), and its circles.

Every import of a `syncd` module is one edge, tagged by where it stands:
- "top": in the module's body (also under `try`/`if`), run when the module is imported;
- "typing": under `if TYPE_CHECKING:` (never run);
- "function": inside a function or method body (run when it is called).

`from syncd.a import b` is an edge to `syncd.a.b` when that is a module, else to `syncd.a`.

Run `python -m tests.import_graph` to print the circles (elementary cycles) of the top-level graph and of
the graph of top-level and function-level imports together (and with the TYPE_CHECKING-only ones).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "syncd"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "top" | "typing" | "function"
    line: int


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "syncd":
                yield alias.name
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    if base.split(".")[0] != "syncd":
        return
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in known else base


def edges_of(module: str, path: Path, known: set[str]) -> list[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[Edge] = []

    def walk(nodes: Iterable[ast.AST], kind: str) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, module, is_package, known):
                    if target != module:
                        out.append(Edge(module, target, kind, node.lineno))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                walk(ast.iter_child_nodes(node), "function")
            elif isinstance(node, ast.If) and kind == "top" and _is_type_checking(node.test):
                walk(node.body, "typing")
                walk(node.orelse, kind)
            else:
                walk(ast.iter_child_nodes(node), kind)

    walk(tree.body, "top")
    return list(dict.fromkeys(out))  # one edge per statement and target


def all_edges(root: Path = ROOT) -> list[Edge]:
    found = modules(root)
    known = set(found)
    return [e for name, path in found.items() for e in edges_of(name, path, known)]


def graph(edges: Iterable[Edge], kinds: set[str]) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for e in edges:
        if e.kind in kinds:
            g.setdefault(e.source, set()).add(e.target)
            g.setdefault(e.target, set())
    return g


def cycles(g: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every elementary cycle, each once, starting from its smallest module name."""
    found: list[tuple[str, ...]] = []
    nodes = sorted(g)
    for i, start in enumerate(nodes):
        allowed = set(nodes[i:])  # a cycle is found from its smallest node only
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(g[start] & allowed)))]
        path = [start]
        on_path = {start}
        while stack:
            _, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(path.pop())
            elif child == start:
                found.append(tuple(path))
            elif child not in on_path:
                path.append(child)
                on_path.add(child)
                stack.append((child, iter(sorted(g[child] & allowed))))
    return found


def main() -> int:
    edges = all_edges()
    function_level = [e for e in edges if e.kind == "function"]
    print(f"syncd imports: {len(edges)} edges ({len(function_level)} inside functions)")
    for title, kinds in (
        ("top-level", {"top"}),
        ("top-level + function-level", {"top", "function"}),
        ("all (also TYPE_CHECKING-only)", {"top", "function", "typing"}),
    ):
        found = cycles(graph(edges, kinds))
        print(f"\ncircles among {title} imports: {len(found)}")
        for c in found:
            print("  " + " -> ".join((*c, c[0])))
    print("\nimports inside functions:")
    for e in function_level:
        print(f"  {e.source}:{e.line} -> {e.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
