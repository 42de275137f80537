"""The package's shape, checked from its source: no import circle, no module importing a layer above its own, and
modules and functions of a readable size (docs/design.md, "Layers").

Every module under ``workbench/`` is parsed with :mod:`ast` (nothing is imported); an import anywhere in a module
counts, inside functions too, except under ``if TYPE_CHECKING:`` (annotations only, never executed). The checks run
on an import graph ``{module: {imported module: line}}``, so the negative controls at the end feed them synthetic
graphs and sources and expect each violation to be reported.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"

#: module prefix -> layer; a module belongs to its longest matching prefix ("workbench" alone is the package's
#: ``__init__``). A module may import its own layer and the layers below, never one above.
LAYERS = {
    # 0 -- what every layer raises and the house's config rules
    "workbench.errors": 0,
    "workbench.rules": 0,
    # 1 -- the process and the machine: files, output folders, threads, worker pools, progress bars
    "workbench.system": 1,
    # 2 -- the paper's maths and its vocabulary, flat at the top level
    "workbench.nets": 2,
    "workbench.forward_pass": 2,
    "workbench.interop": 2,
    "workbench.graphs": 2,
    "workbench.symmetry": 2,
    "workbench.equivariance": 2,
    "workbench.gauge": 2,
    "workbench.balance": 2,
    "workbench.objective": 2,
    "workbench.data": 2,
    "workbench.memory": 2,
    "workbench.records": 2,
    # 3 -- built on the maths: the metanetworks, the zoo of networks, how a result is measured and judged
    "workbench.metanet": 3,
    "workbench.zoo": 3,
    "workbench.measure": 3,
    # 4 -- training one metanetwork and using it; the shipped optimizers it loads
    "workbench.training": 4,
    "workbench.optimizers": 4,
    # 5 -- what the metanetwork is compared with, and what a run shows
    "workbench.baselines": 5,
    "workbench.reporting": 5,
    "workbench.viz": 5,
    # 6 -- the experiments of the notebooks
    "workbench.pipeline": 6,
    # 7 -- the run machinery: params files, the runner, estimates, the commands
    "workbench.run": 7,
    # 8 -- the entry points: the package itself, the command line, the notebooks' helpers
    "workbench": 8,
    "workbench.__main__": 8,
    "workbench.notebook": 8,
}

#: imports left out of the cycle check, each with why it is not a circle in practice: (importer, imported) -> reason
CYCLE_ALLOWED: dict[tuple[str, str], str] = {}

#: imports allowed to go up a layer: (importer, imported) -> reason
UPWARD_ALLOWED: dict[tuple[str, str], str] = {}

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: functions allowed over MAX_FUNCTION_LINES: "module:qualified name" -> reason
LONG_ALLOWED: dict[str, str] = {
    "workbench.forward_pass:forward": "the paper's forward pass: 19 lines of its `.. math::` docstring and 11 of a "
                                      "one-argument-per-line signature around a 32-line body",
    "workbench.zoo.generation:generate": "15 lines of signature (one setting per line) and 18 of docstring around a "
                                         "28-line body",
    "workbench.pipeline.table:family_results": "notebook 06's results of one family in the order the table reads; "
                                               "each step is a helper already and what is left hands their results "
                                               "on (11 lines of docstring, 5 of signature)",
}


# ------------------------------------------------------------------------------------------------ the checker


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph(sources: dict[str, tuple[str, bool]], prefix: str = "workbench") -> dict[str, dict[str, int]]:
    """``{module: {imported module: first line}}`` for ``sources`` (``{module: (source text, is a package)}``),
    counting only modules of ``prefix``; ``from a import b`` is an import of ``a.b`` when that is a module."""
    graph: dict[str, dict[str, int]] = {}
    for mod, (text, is_package) in sources.items():
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = mod.split(".") if is_package else mod.split(".")[:-1]
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in sources else origin for a in node.names]
            for target in targets:
                if (target == prefix or target.startswith(prefix + ".")) and target != mod:
                    edges.setdefault(target, node.lineno)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]], allowed=()) -> list[list[str]]:
    """The import circles of ``graph`` (strongly connected components of more than one module, or a module importing
    itself), leaving out the edges in ``allowed``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if (v, w) in allowed or w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, {}):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_of(module: str, layers: dict[str, int], root: str = "workbench") -> int | None:
    best = None
    for prefix, layer in layers.items():
        if module == prefix or (prefix != root and module.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def upward_imports(graph: dict[str, dict[str, int]], layers: dict[str, int], allowed=()) -> list[str]:
    """``"importer (layer a) imports imported (layer b > a) at line n"`` for every import up a layer."""
    found = []
    for mod, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            low, high = layer_of(mod, layers), layer_of(target, layers)
            if low is not None and high is not None and high > low and (mod, target) not in allowed:
                found.append(f"{mod} (layer {low}) imports {target} (layer {high}) at line {line}")
    return found


def long_functions(text: str, module: str, limit: int) -> dict[str, int]:
    """``{"module:qualified name": lines}`` of the functions and methods of ``text`` longer than ``limit`` lines
    (from the ``def`` line to the last line of the body)."""
    found: dict[str, int] = {}

    def walk(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{scope}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > limit:
                        found[f"{module}:{name}"] = length
                walk(child, name + ".")
            else:
                walk(child, scope)

    walk(ast.parse(text), "")
    return found


def _sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p, PACKAGE): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(PACKAGE.rglob("*.py"))}


# ------------------------------------------------------------------------------------------------ the package


def test_the_package_has_no_import_circle():
    cycles = find_cycles(import_graph(_sources()), allowed=CYCLE_ALLOWED)
    assert not cycles, f"import circles (break them or list an edge in CYCLE_ALLOWED with the reason): {cycles}"


def test_every_module_has_a_layer_and_imports_none_above_it():
    graph = import_graph(_sources())
    missing = [m for m in graph if layer_of(m, LAYERS) is None]
    assert not missing, f"modules without a layer (add their prefix to LAYERS): {missing}"
    upward = upward_imports(graph, LAYERS, allowed=UPWARD_ALLOWED)
    assert not upward, "imports up a layer (move the code to its layer):\n" + "\n".join(upward)


def test_the_allow_lists_name_what_exists_and_say_why():
    graph = import_graph(_sources())
    for (mod, target), reason in {**CYCLE_ALLOWED, **UPWARD_ALLOWED}.items():
        assert target in graph.get(mod, {}), f"allow-list entry {mod} -> {target} is stale: that import is gone"
        assert reason.strip(), f"allow-list entry {mod} -> {target} gives no reason"
    long = {}
    for mod, (text, _) in _sources().items():
        long.update(long_functions(text, mod, MAX_FUNCTION_LINES))
    for name, reason in LONG_ALLOWED.items():
        assert name in long, f"LONG_ALLOWED entry {name} is stale: the function is gone or now short enough"
        assert reason.strip(), f"LONG_ALLOWED entry {name} gives no reason"


def test_modules_and_functions_stay_readable():
    too_long_modules, too_long_functions = {}, {}
    for mod, (text, _) in _sources().items():
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long_modules[mod] = lines
        too_long_functions.update(long_functions(text, mod, MAX_FUNCTION_LINES))
    assert not too_long_modules, f"modules over {MAX_MODULE_LINES} lines (split them): {too_long_modules}"
    unlisted = {k: v for k, v in too_long_functions.items() if k not in LONG_ALLOWED}
    assert not unlisted, (f"functions over {MAX_FUNCTION_LINES} lines (split them, or list them in LONG_ALLOWED "
                          f"with the reason): {unlisted}")


# ------------------------------------------------------------------------------------------------ negative controls


def test_the_checker_reports_a_circle_an_upward_import_and_a_long_function():
    sources = {
        "pkg": ("", True),
        "pkg.low": ("from .high import thing\n", False),
        "pkg.high": ("def f():\n    from . import low\n", False),  # inside a function: still an import
        "pkg.sub": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import thing\n", True),
    }
    graph = import_graph(sources, prefix="pkg")
    assert graph["pkg.low"] == {"pkg.high": 1} and graph["pkg.high"] == {"pkg.low": 2}
    assert graph["pkg.sub"] == {}  # annotations only: not an import
    assert find_cycles(graph) == [["pkg.high", "pkg.low"]]
    assert find_cycles(graph, allowed={("pkg.high", "pkg.low")}) == []
    assert find_cycles({"a": {"a": 1}}) == [["a"]]

    layers = {"pkg.low": 0, "pkg.high": 1, "pkg": 2}
    assert upward_imports(graph, layers) == ["pkg.low (layer 0) imports pkg.high (layer 1) at line 1"]
    assert upward_imports(graph, layers, allowed={("pkg.low", "pkg.high")}) == []
    assert layer_of("pkg.sub", layers, root="pkg") is None  # the root prefix names the package alone

    body = "".join(f"    x{i} = {i}\n" for i in range(68))
    text = f"def short():\n    return 1\n\n\nclass C:\n    def long(self):\n        '''doc'''\n{body}"
    text = text.replace("\n    x", "\n        x")
    assert long_functions(text, "m", MAX_FUNCTION_LINES) == {"m:C.long": 70}
    assert long_functions(text, "m", 70) == {}
