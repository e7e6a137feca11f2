"""Each file has one owner: no import cycle among jaxmlp's modules, and the run folder
knows nothing of training (issue 16). Read from the source, imports inside functions too."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxmlp"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, each named below the package
    (``"_trainer"``, ``"app._cli"``); ``from jaxmlp import x`` counts as ``jaxmlp.x`` when
    that module exists (the package itself only hands names on)."""
    files = {".".join(p.relative_to(package).with_suffix("").parts): p
             for p in package.rglob("*.py") if p.stem != "__init__"}
    known = set(files)

    def owner(dotted: str):  # the longest known module that ``dotted`` is or is inside
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                return ".".join(parts[:end])
        return None

    graph = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            found |= {owner(t.split(".", 1)[1]) for t in targets
                      if t.startswith("jaxmlp.")} - {None}
        graph[name] = found - {name}
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
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "e.py").write_text("from jaxmlp.app import f\nfrom jaxmlp import d\n")
    (tmp_path / "app" / "f.py").write_text("import jaxmlp.app.e\n")
    graph = import_graph(tmp_path)
    assert (graph["app.e"], graph["app.f"]) == ({"app.f", "d"}, {"app.e"})
    assert sorted(sorted(c[:-1]) for c in cycles(graph)) == [["a", "b", "c"], ["app.e", "app.f"]]


def private_imports(package: Path = PACKAGE) -> list[str]:
    """``"importer: module.name"`` for each underscore name a module imports from another
    (a private module itself, ``from jaxmlp import _checks``, is fine: the package's own)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxmlp"):
                for alias in node.names:
                    module = f"{node.module}.{alias.name}".replace(".", "/")
                    is_module = any((package.parent / f"{module}{end}").exists()
                                    for end in (".py", "/__init__.py"))
                    if (alias.name.startswith("_") and not alias.name.startswith("__")
                            and not is_module):
                        found.append(f"{path.relative_to(package)}: {node.module}.{alias.name}")
    return found


def test_the_finder_finds_an_imported_private_name(tmp_path):
    package = tmp_path / "jaxmlp"
    package.mkdir()
    (package / "_a.py").write_text("from jaxmlp import _b\nfrom jaxmlp._b import f, _g\n")
    (package / "_b.py").write_text("def f():\n    from jaxmlp._a import __doc__, _h\n")
    assert private_imports(package) == ["_a.py: jaxmlp._b._g", "_b.py: jaxmlp._a._h"]


def test_modules_import_each_other_s_shared_names_never_their_private_ones():
    # Issue 25: a leading underscore means "this module's alone"; what modules share has none.
    assert private_imports() == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module", ["_run", "_config", "_checkpoint", "_data"])
def test_files_and_settings_know_nothing_of_training(module):
    # Training imports the run folder, never the reverse.
    assert not import_graph()[module] & {"_trainer", "_sweep", "_layout", "_epoch", "app._cli"}


def test_the_library_never_imports_the_application():
    # Issue 25: jaxmlp.app (the command, serve) builds on the library, never the reverse
    # (`python -m jaxmlp`, __main__, is the command's).
    graph = import_graph()
    assert {"app._cli", "app._entry", "app._serve", "app._pages"} <= set(graph)
    assert graph["__main__"] == {"app._entry"}
    for module, imports in graph.items():
        if not module.startswith("app.") and module != "__main__":
            assert not {m for m in imports if m.startswith("app.")}, module
