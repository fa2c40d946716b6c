"""What ``run --tune N`` cost, from a run store: each arm's trials against its final cell, in CPU seconds.

Issue 29's target: ``--tune 8`` at most about 3x the untuned student cells. An
arm's final cell at the tuning seed is the chosen trial's point trained on the
full schedule, so its cost stands for the untuned cell's (the same model, data
and schedule; only loss weights and the learning rate differ).

The ratio is in CPU seconds (core-seconds: every thread of the process that
trained), not wall seconds: trials run one after another in the run's own
process on all its threads, while cells run in worker processes on one thread
each, so their wall times do not compare; and a run paused for other work
(``SIGSTOP``) or sharing the machine inflates wall time, not CPU time. Stores
from before CPU time was recorded fall back to wall seconds, and say so.
The last line also sets the tuning against every final student cell of
the tuned runs (every seed: the cells an untuned run of the same matrix
trains), the comparison issue 29's "at most about 3x the untuned student
cells" reads most naturally as; a final cell is a done student cell that a
run tuning its arm planned. Reads the store only (``--store .medkd/runs.sqlite``).

    python benchmarks/tune_cost.py --store .medkd/runs.sqlite
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from medkd_bench.run.store import Store
from medkd_bench.tune.space import arm_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path(".medkd/runs.sqlite"))
    args = parser.parse_args()
    with Store(args.store, readonly=True) as store:
        trials = store.trials()
        cells = {c.hash: c for c in store.cells(status="done")}
        runs = store.run_settings()
    finals = final_cells(cells, runs)
    studies: dict[str, list] = defaultdict(list)
    for t in trials:
        studies[t.study].append(t)
    total_trials = total_cells = 0.0
    units = set()
    print(f"{'arm':52} {'trials':>6} {'pruned':>6} {'wall s':>8} {'CPU s':>8} {'cell CPU s':>10} {'ratio':>6}")
    for _study, ts in sorted(studies.items(), key=lambda kv: kv[1][0].arm):
        wall = sum(t.record.get("seconds", 0.0) for t in ts)
        cpu = sum(t.record["cpu_seconds"] for t in ts) if all("cpu_seconds" in t.record for t in ts) else None
        final = chosen_final(ts, finals.get(ts[0].arm, []))
        cell_cpu = final.timings.get("total_cpu_s") if final else None
        if cpu is not None and cell_cpu:
            spent, cell_cost, unit = cpu, cell_cpu, "CPU"
        else:  # recorded before CPU time was
            spent, cell_cost, unit = wall, final.timings.get("total_s") if final else None, "wall"
        ratio = f"{spent / cell_cost:6.2f}" if cell_cost else "     -"
        print(f"{ts[0].arm:52} {len(ts):6d} {sum(t.state == 'pruned' for t in ts):6d} {wall:8.1f} "
              f"{cpu if cpu is not None else float('nan'):8.1f} {cell_cpu or float('nan'):10.1f} {ratio}"
              + ("" if unit == "CPU" else "  (wall seconds: no CPU time stored)"))
        if cell_cost:
            total_trials += spent
            total_cells += cell_cost
            units.add(unit)
    if total_cells:
        unit = " and ".join(sorted(units))
        every_seed = [c for arm in {t.arm for t in trials} for c in finals.get(arm, [])]
        cpu = [c.timings.get("total_cpu_s") for c in every_seed]
        against_all = (f"; {total_trials / sum(cpu):.2f}x the {len(cpu)} final student cells of every seed "
                       f"({sum(cpu):.0f} CPU s, what an untuned run of the matrix trains)"
                       if unit == "CPU" and cpu and all(cpu) else "")
        print(f"all arms with a final cell: tuning {total_trials:.0f} {unit} s = {total_trials / total_cells:.2f}x "
              f"their final cells' {total_cells:.0f} {unit} s at the tuning seed{against_all}")


def chosen_final(trials: list, finals: list):
    """An arm's final cell at the tuning seed: a final cell that is one of its trials' points (the chosen one's).

    Not any done cell at a trial's point: the paper-default cell is trial 0's
    point, and a store that also holds the untuned matrix has it done.
    """
    points = {t.record.get("final_hash") for t in trials}
    return next((c for c in finals if c.hash in points), None)


def final_cells(cells: dict, runs: dict) -> dict[str, list]:
    """Per arm key, the done student cells (every seed) planned by a run that tuned that arm."""
    out: dict[str, list] = defaultdict(list)
    for cell_hash, planned_by in runs.items():
        c = cells.get(cell_hash)
        arm = arm_of(c) if c is not None else None  # None for a teacher: not tuned
        if arm is not None and any(arm.key in settings.get("tuned", {}) for _, settings in planned_by):
            out[arm.key].append(c)
    return out

if __name__ == "__main__":
    main()
