"""The import graph of syncd: no circle, and the simulators independent of the clients they test."""

from __future__ import annotations

from pathlib import Path

from tests.import_graph import ROOT, Edge, all_edges, cycles, edges_of, graph, modules


def test_no_circle_among_top_level_imports() -> None:
    assert cycles(graph(all_edges(), {"top"})) == []


def test_no_circle_even_through_imports_inside_functions() -> None:
    # the run's summary, its progress hooks and the schedule have their own modules, so nothing needs an
    # import inside a function to break a circle any more
    assert cycles(graph(all_edges(), {"top", "function", "typing"})) == []


def test_the_simulators_import_nothing_from_the_clients() -> None:
    """A simulator is written from the vendor docs: taking the client's constants would mirror its bugs."""
    sim = [e for e in all_edges() if e.source == "syncd.sim" or e.source.startswith("syncd.sim.")]
    assert sim, "the simulators' imports were not found"
    clients = [e for e in sim if e.target.split(".")[:2] in (["syncd", "pbx"], ["syncd", "vendors"])]
    assert clients == []
    # nor through a module they import
    g = graph(all_edges(), {"top", "function", "typing"})
    reached: set[str] = set()
    todo = [e.target for e in sim]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(g.get(name, ()))
    assert sorted(n for n in reached if n.split(".")[:2] in (["syncd", "pbx"], ["syncd", "vendors"])) == []


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: a circle it cannot see would make the tests above pass for nothing."""
    pkg = tmp_path / "syncd"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("import syncd.a\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nfrom syncd.sub import leaf\n"
        "if TYPE_CHECKING:\n    from syncd import b\n"
    )
    (pkg / "b.py").write_text("def f():\n    from syncd.a import x\n    return x\n")
    found = modules(pkg)
    assert set(found) == {"syncd", "syncd.sub", "syncd.sub.leaf", "syncd.a", "syncd.b"}
    edges = [e for name, path in found.items() for e in edges_of(name, path, set(found))]
    assert set(edges) == {
        Edge("syncd.sub", "syncd.sub.leaf", "top", 1),
        Edge("syncd.sub.leaf", "syncd.a", "top", 1),
        Edge("syncd.a", "syncd.sub.leaf", "top", 2),
        Edge("syncd.a", "syncd.b", "typing", 4),
        Edge("syncd.b", "syncd.a", "function", 2),
    }
    assert cycles(graph(edges, {"top"})) == [("syncd.a", "syncd.sub.leaf")]
    assert sorted(cycles(graph(edges, {"top", "function", "typing"}))) == [
        ("syncd.a", "syncd.b"),
        ("syncd.a", "syncd.sub.leaf"),
    ]


def test_the_graph_reads_the_real_package() -> None:
    assert "syncd.engine" in modules(ROOT)
    seen = {(e.source, e.target, e.kind) for e in all_edges()}
    assert ("syncd.sim.launch", "syncd.sim.pbx", "top") in seen
    assert ("syncd.cli", "syncd.engine", "function") in seen  # the CLI loads a command's modules late
