"""Each file has one owner: no import cycle among jaxmlp's modules, and the run folder
knows nothing of training (issue 16). Read from the source, imports inside functions too."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxmlp"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``; ``from jaxmlp import x`` counts as
    ``jaxmlp.x`` when that module exists (the package itself only hands names on)."""
    known = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in known:
        found = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names
                          if a.name.startswith("jaxmlp.") and a.name.split(".")[1] in known}
            elif isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] != "jaxmlp":
                    continue
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found |= {a.name for a in node.names if a.name in known}
        graph[name] = (found & known) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first walk (each set of modules once)."""
    found, seen = [], set()

    def walk(node, path):
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycle = path[path.index(nxt):] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif len(path) < len(graph):
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_the_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from jaxmlp.b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from jaxmlp import c\n")
    (tmp_path / "c.py").write_text("import jaxmlp.a\n")
    (tmp_path / "d.py").write_text("from jaxmlp.a import x\nimport numpy\n")
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c[:-1]) for c in cycles(graph)] == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module", ["run", "config", "checkpoint", "data"])
def test_files_and_settings_know_nothing_of_training(module):
    # Training imports the run folder, never the reverse.
    assert not import_graph()[module] & {"train", "trainer", "sweep", "epoch", "cli"}
