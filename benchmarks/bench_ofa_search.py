"""Searched OFA students next to OFA-595: measured latency, GMACs and parameters for three budgets.

OFA-595 (the study's reference student) is measured first on this machine, at ``--img-size``, the
way the leaderboard measures models. Then ``medkd_bench.nas.evolution.search`` is run for three
budgets given as fractions of OFA-595's own cost (latency by default, or GMACs with
``--kind gmacs``), and each searched student is measured the same way. Search wall time is shown
too: the first search fills the per-part lookup table, later ones mostly reuse it.

Usage: python benchmarks/bench_ofa_search.py [--kind latency|gmacs] [--fractions 0.5,0.75,1.0]
       [--img-size 64] [--device cpu] [--population 20] [--generations 5] [--repeats 10]
       [--lut-dir DIR]   # keep the table between runs (default: a temporary folder)
       [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from medkd_bench.errors import MedkdError
from medkd_bench.evaluate.cost import count_gmacs, count_params, measure_latency
from medkd_bench.nas.cost_table import LUT_FILE
from medkd_bench.nas.evolution import Budget, SearchSettings, search
from medkd_bench.runtime.device import machine_description, resolve_runtime
from medkd_bench_plugins.students.ofa_595 import build_ofa_595


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("latency", "gmacs"), default="latency")
    parser.add_argument("--fractions", default="0.5,0.75,1.0", help="Budgets as fractions of OFA-595's cost.")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--lut-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads [default: torch's]; 1 steadies timings on a busy machine.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runtime = resolve_runtime(args.device, "auto")
    size, classes = args.img_size, args.num_classes
    reference = build_ofa_595(classes, size).to(runtime.device).eval()
    ref_latency = measure_latency(reference, size, runtime, warmup=5, runs=args.repeats)["latency_ms"]
    ref_gmacs = count_gmacs(reference, size, runtime.device)
    ref_params = count_params(reference) / 1e6
    print(f"machine: {machine_description(runtime)}; {size} px, {classes} classes")
    print(f"{'student':<22}{'budget':>14}{'latency (ms)':>14}{'GMACs':>10}{'params (M)':>12}{'search (s)':>12}")
    print(f"{'ofa-595 (reference)':<22}{'-':>14}{ref_latency:>14.2f}{ref_gmacs:>10.4f}{ref_params:>12.2f}{'-':>12}")

    opts = SearchSettings(population=args.population, generations=args.generations, verify_runs=args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        lut = (args.lut_dir or Path(tmp)) / LUT_FILE
        for fraction in (float(f) for f in args.fractions.split(",")):
            budget = (Budget("latency_ms", fraction * ref_latency) if args.kind == "latency"
                      else Budget("gmacs", fraction * ref_gmacs))
            start = time.perf_counter()
            label = f"searched x{fraction:g}"
            try:
                result = search(budget, runtime, size, classes, lut_path=lut, opts=opts)
            except MedkdError as exc:  # a budget this machine cannot meet is a result, not a crash
                print(f"{label:<22}{budget.text():>14}  not met: {exc}")
                continue
            spent = time.perf_counter() - start
            print(f"{label:<22}{budget.text():>14}{result.latency_ms:>14.2f}{result.gmacs:>10.4f}"
                  f"{result.params_m:>12.2f}{spent:>12.1f}  ({result.parts_timed} parts newly timed)")


if __name__ == "__main__":
    main()
