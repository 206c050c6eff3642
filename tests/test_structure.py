"""The shape of the repo: model.py is the network alone, modules don't import in a cycle, and
scripts are entry points that nothing imports. Imports inside functions count: they hide cycles."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {p.stem: p for p in ROOT.glob("*.py")}
SCRIPTS = {"train", "eval", "prepare_librispeech", "prepare_synthetic", "bench", "inquiry", "convert"}


def imports_of(path: Path) -> set:
    """Top-level names of every module `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def project_graph() -> dict:
    return {name: imports_of(path) & MODULES.keys() - {name} for name, path in MODULES.items()}


def test_the_scripts_exist():
    assert SCRIPTS <= MODULES.keys(), SCRIPTS - MODULES.keys()


def test_model_py_is_the_network_alone():
    source = MODULES["model"].read_text()
    assert imports_of(MODULES["model"]) <= {"torch", "math", "dataclasses", "typing"}
    assert len(source.splitlines()) <= 350
    assert "def decode" not in source and "Int8" not in source


def test_no_module_imports_a_script():
    offenders = {name: deps & SCRIPTS for name, deps in project_graph().items() if deps & SCRIPTS}
    assert not offenders, f"scripts imported as libraries: {offenders}"


def test_no_import_cycles():
    graph = project_graph()
    state = {}  # name -> "visiting" | "done"

    def visit(name, path):
        if state.get(name) == "visiting":
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if state.get(name) == "done":
            return
        state[name] = "visiting"
        for dep in sorted(graph[name]):
            visit(dep, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The check itself: two modules importing each other inside functions are caught."""
    (tmp_path / "a.py").write_text("def f():\n    from b import g\n")
    (tmp_path / "b.py").write_text("def g():\n    import a\n")
    monkeypatch.setattr(__import__(__name__), "MODULES", {p.stem: p for p in tmp_path.glob("*.py")})
    try:
        test_no_import_cycles()
    except AssertionError as e:
        assert "a -> b -> a" in str(e)
    else:
        raise AssertionError("the cycle a <-> b was not found")
