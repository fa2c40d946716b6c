"""The house rules of the source tree, checked from the source itself (ast), so they stay true.

No import cycles among first-party modules (``medkd_bench`` and the built-in
plugins), counting imports inside functions and under ``TYPE_CHECKING`` too,
no module over 400 lines, layers that do not reach up, and one writer of the
run store: the runner has a cell computer (it is not one), and what workers
run cannot import the store. No catch-all package (``system/``, ``utils/``):
a helper shared across layers lives in a named helper package or module, and
only while at least two modules outside it use it; a helper with one user
belongs next to that user.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: source folder -> the import name it installs under
PACKAGES = {"medkd_bench": "medkd_bench", "plugins": "medkd_bench_plugins"}
MAX_LINES = 400
#: Names that say "anything goes here": no first-party package or module may have one.
CATCH_ALL_NAMES = {"system", "util", "utils", "misc", "helpers", "common_utils"}
#: Helpers shared across layers (packages, or single modules); each of their modules needs two users outside.
HELPERS = ("medkd_bench.runtime", "medkd_bench.files", "medkd_bench.messages", "medkd_bench.spec_discovery")


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
    # the console script (entry, __main__) is above the CLI: it installs the Ctrl-C handler, then imports the CLI
    above = ("medkd_bench.cli", "medkd_bench_plugins", "medkd_bench.__main__", "medkd_bench.entry")
    below_cli = [m for m in graph if not m.startswith(above)]
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


def catch_all(modules) -> list[str]:
    """First-party packages and modules named like a grab-bag (``medkd_bench.system``, ``...utils``)."""
    return sorted(m for m in modules if m.split(".")[-1] in CATCH_ALL_NAMES)


def single_user_helpers(graph: dict[str, set[str]], helpers=HELPERS) -> dict[str, list[str]]:
    """Helper modules with fewer than two first-party users outside their helper: module -> its users."""
    users: dict[str, set[str]] = {m: set() for m in graph}
    for module, targets in graph.items():
        for target in targets:
            users[target].add(module)
    found = {}
    for helper in helpers:
        for module in graph:
            if module == helper and any(m.startswith(helper + ".") for m in graph):
                continue  # a helper package's __init__ is not a helper of its own
            if module == helper or module.startswith(helper + "."):
                outside = sorted(u for u in users[module] if u != helper and not u.startswith(helper + "."))
                if len(outside) < 2:
                    found[module] = outside
    return found


def test_there_is_no_catch_all_package():
    """``system/`` was a grab-bag of nine modules; each now lives with its users or in a named helper."""
    modules = first_party_modules()
    assert not (REPO / "medkd_bench" / "system").exists()
    assert catch_all(modules) == []


def test_a_shared_helper_has_more_than_one_user():
    """A module of a helper package (runtime/, files/) or a helper module is used by two modules outside it."""
    graph = import_graph()
    assert all(any(m == h or m.startswith(h + ".") for m in graph) for h in HELPERS)  # every helper exists
    assert single_user_helpers(graph) == {}


def test_the_helper_checks_find_a_grab_bag_and_a_single_user_helper():
    graph = {"p.system": set(), "p.system.a": set(), "p.x": {"p.system.a", "p.h.one"}, "p.y": {"p.system.a"},
             "p.h": set(), "p.h.one": set(), "p.h.two": {"p.h.one"}, "p.solo": set(), "p.z": {"p.solo"}}
    assert catch_all(graph) == ["p.system"]
    assert single_user_helpers(graph, ("p.system", "p.h", "p.solo")) == {
        "p.h.one": ["p.x"], "p.h.two": [], "p.solo": ["p.z"]}


def test_importing_the_library_loads_no_command_line():
    """``import medkd_bench`` (what every plugin does) and loading the registry import neither click nor cli/."""
    import subprocess
    import sys

    code = ("import sys, medkd_bench, medkd_bench.nas, medkd_bench.registry as r; r.load_registry(); "
            "print(sorted(m for m in sys.modules if m == 'click' or m.startswith('medkd_bench.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
