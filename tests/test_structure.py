"""The package's shape: its modules import each other without a circle. Read from the
sources' syntax trees, so it needs no build."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "python" / "fastnn"
EXTENSION = "fastnn._C"  # compiled from csrc/, not in the source tree; imports nothing of ours


def module_name(path):
    parts = ("fastnn",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """{module: set of fastnn modules it imports}, counting every import statement, at
    the top or inside a function. ``from fastnn import x`` is an edge to fastnn.x when
    that is a module, else to fastnn itself."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths) | {EXTENSION}
    graph = {EXTENSION: set()}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ._loader import y
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in modules else base)
        graph[module] = {target for target in targets if target in modules} - {module}
    return graph


def cycles(graph):
    """Import circles met by a depth-first walk, each as [a, b, ..., a]: empty exactly
    when there are none."""
    found, done = [], set()

    def visit(module, path):
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert {"fastnn.layers", "fastnn.models", "fastnn.utils"} <= graph["fastnn"]  # from fastnn import
    assert "fastnn.layers" in graph["fastnn.models"]  # from fastnn.layers import ...
    assert "fastnn.datasets._loader" in graph["fastnn.datasets.mnist"]  # from . import _loader
    assert "fastnn" in graph["fastnn.bench._common"]  # import fastnn


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_layering():
    """The name registry and the file format sit below the model: utils and _saving
    know neither layers nor models, and only models reaches _saving."""
    graph = import_graph()
    assert graph["fastnn._naming"] == set()
    for low in ("fastnn.utils", "fastnn._saving"):
        assert not graph[low] & {"fastnn.layers", "fastnn.models"}, (low, graph[low])
    assert [module for module, targets in graph.items() if "fastnn._saving" in targets] == [
        "fastnn.models"]


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
