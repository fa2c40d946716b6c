"""The house rules of the source tree, checked from the source itself (ast), so they stay true.

No import cycles among first-party modules (``medkd_bench`` and the built-in
plugins), counting imports inside functions and under ``TYPE_CHECKING`` too,
no module over 400 lines, layers that do not reach up, and one writer of the
run store: the runner has a cell computer (it is not one), and what workers
run cannot import the store.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: source folder -> the import name it installs under
PACKAGES = {"medkd_bench": "medkd_bench", "plugins": "medkd_bench_plugins"}
MAX_LINES = 400


def first_party_modules() -> dict[str, Path]:
    modules = {}
    for folder, name in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [name, *path.relative_to(REPO / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """First-party modules an import statement names (a package's ``from pkg import sub`` names both)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    return {n for n in names if n in modules}


def import_graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(module, path, node, modules):
                    # A module importing its own package's __init__ is how Python imports it anyway.
                    if target != module and not module.startswith(target + "."):
                        graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_among_first_party_modules():
    graph = import_graph()
    assert len(graph) > 50  # the whole tree was read
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_is_over_400_lines():
    long = {m: n for m, p in first_party_modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_layers_do_not_reach_up():
    """The layers below the CLI never import it; report/ never imports training; the contract imports no layer."""
    graph = import_graph()
    below_cli = [m for m in graph if not m.startswith(("medkd_bench.cli", "medkd_bench_plugins", "medkd_bench.__main__"))]
    assert {m: sorted(t for t in graph[m] if t.startswith("medkd_bench.cli")) for m in below_cli} == \
        {m: [] for m in below_cli}
    report = [m for m in graph if m.startswith("medkd_bench.report")]
    assert not [t for m in report for t in graph[m] if t.startswith(("medkd_bench.train.loop", "medkd_bench.run.runner"))]
    contract = ["medkd_bench.hookspecs", "medkd_bench.specs", "medkd_bench.errors"]
    assert {m: sorted(graph[m] - set(contract)) for m in contract} == {m: [] for m in contract}


def test_the_runner_has_a_cell_computer_instead_of_being_one():
    """``MatrixRunner`` (the store's writer) holds a ``CellComputer``; it does not inherit from it."""
    tree = ast.parse((REPO / "medkd_bench" / "run" / "runner.py").read_text())
    runner = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "MatrixRunner")
    assert [ast.unparse(b) for b in runner.bases] == []


def test_the_worker_side_cannot_reach_the_store():
    """What pool workers and Ray tasks run imports neither the store nor the runner (its only writer), even lazily."""
    graph = import_graph()
    for start in ("medkd_bench.run.executors.pool_worker", "medkd_bench.run.executors.worker"):
        reached, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert not reached & {"medkd_bench.run.store", "medkd_bench.run.runner"}, start
