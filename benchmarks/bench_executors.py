"""Executor benchmark: the same matrix with ``--executor local`` and ``--executor ray``, side by side.

Both runs start from empty work directories on this machine, in this one
invocation; the Ray run starts its own local cluster (its start-up is part of
its wall time). Printed: each executor's wall time, the ratio local / ray
(above 1.0: Ray is faster), and whether every cell's accuracy, macro-F1 and
test predictions agree between the two stores.

Usage: python benchmarks/bench_executors.py [--ray-cpus N] [--cpus-per-cell C] [-- extra run options]
e.g.   python benchmarks/bench_executors.py -- --matrix quick --teachers visformer-s --epochs 1 --img-size 32
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medkd_bench.run.store import Store

COMPARED = ("accuracy", "macro_f1", "test_predictions")


def timed_run(args: list[str], root: Path) -> float:
    cmd = [sys.executable, "-m", "medkd_bench.cli", "run", *args,
           "--work-dir", str(root / "work"), "--leaderboard-dir", str(root / "boards")]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray cluster [all]")
    parser.add_argument("--cpus-per-cell", type=float, default=1.0)
    parser.add_argument("extra", nargs="*", help="options passed to both `medkd-bench run` commands")
    args = parser.parse_args()
    ray_args = ["--executor", "ray", "--cpus-per-cell", str(args.cpus_per_cell)]
    if args.ray_cpus:
        ray_args += ["--ray-cpus", str(args.ray_cpus)]
    with tempfile.TemporaryDirectory() as tmp:
        local_s = timed_run(args.extra, Path(tmp) / "local")
        ray_s = timed_run([*args.extra, *ray_args], Path(tmp) / "ray")
        with Store(Path(tmp) / "local" / "work" / "runs.sqlite") as a, \
                Store(Path(tmp) / "ray" / "work" / "runs.sqlite") as b:
            first = {c.hash: c.metrics for c in a.cells()}
            second = {c.hash: c.metrics for c in b.cells()}
    same = first.keys() == second.keys() and all(
        first[h].get(k) == second[h].get(k) for h in first for k in COMPARED)
    print(f"{'executor':<10}{'wall s':>10}")
    print(f"{'local':<10}{local_s:>10.1f}")
    print(f"{'ray':<10}{ray_s:>10.1f}")
    print(f"local / ray: {local_s / ray_s:.2f}; {len(first)} cells; "
          f"{'same' if same else 'DIFFERENT'} accuracy, macro-F1 and predictions")


if __name__ == "__main__":
    main()
