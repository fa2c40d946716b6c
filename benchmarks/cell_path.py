"""How many first-party modules does one cell cross from ``cli/run.py`` to the store? (issue 27)

Runs a real ``medkd-bench run --matrix quick --epochs 1`` in a temporary directory and records
the medkd-bench modules on the call stack at two points of its cells: when a cell enters
training (``train.loop.fit``) and when the driver records it (``Store.finish``). Their union,
with those two modules, is the path one cell takes through the house; helpers a frame calls
and returns from (data loading, the models, a method's loss) are not on it.

    python benchmarks/cell_path.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import FrameType

from click.testing import CliRunner

import medkd_bench
import medkd_bench.run.computer as computer
import medkd_bench.run.store as store

ROOT = Path(medkd_bench.__file__).resolve().parent.parent


def first_party(frame: FrameType | None) -> list[str]:
    """The repository's modules on the stack from ``frame`` outwards, outermost first, each once."""
    modules: list[str] = []
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(ROOT) and not {"tests", "benchmarks"} & set(path.relative_to(ROOT).parts):
            name = str(path.relative_to(ROOT))
            if name not in modules:
                modules.append(name)
        frame = frame.f_back
    return list(reversed(modules))


def main() -> None:
    stacks: dict[str, list[str]] = {}

    def spy(owner: object, name: str, module: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            stacks.setdefault(name, first_party(sys._getframe(1)) + [module])
            return original(*args, **kwargs)

        setattr(owner, name, wrapped)

    spy(store.Store, "finish", "medkd_bench/run/store.py")
    spy(computer, "fit", "medkd_bench/train/loop.py")
    from medkd_bench.cli.main import cli

    with tempfile.TemporaryDirectory() as tmp:
        result = CliRunner().invoke(cli, ["run", "--matrix", "quick", "--epochs", "1", "--jobs", "1",
                                          "--work-dir", f"{tmp}/w", "--leaderboard-dir", f"{tmp}/lb",
                                          "--explain-images", "1", "--sanity-images", "0", "--latency-runs", "1", "--latency-seconds", "0"])
    if result.exit_code != 0:
        raise SystemExit(f"the quick run failed (exit {result.exit_code}): {result.output[-500:]}")
    union: list[str] = []
    for point, modules in stacks.items():
        print(f"{point}: {len(modules)} modules on the stack")
        for m in modules:
            print(f"  {m}")
        union += [m for m in modules if m not in union]
    print(f"one cell's path, cli/run.py to the store: {len(union)} first-party modules")


if __name__ == "__main__":
    main()
