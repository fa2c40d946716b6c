"""What ``run --tune N`` cost, from a run store: each arm's trial seconds against its final cell's.

Issue 29's target: ``--tune 8`` at most about 3x the untuned student cells. An
arm's final cell at the tuning seed is the chosen trial's point trained on the
full schedule, so its training time stands for the untuned cell's (the same
model, data and schedule; only loss weights and the learning rate differ).
Reads the store only (``--store .medkd/runs.sqlite``); run it after a tuned run
on a quiet machine, since trial and cell times taken beside other work are slow.

    python benchmarks/tune_cost.py --store .medkd/runs.sqlite
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from medkd_bench.run.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path(".medkd/runs.sqlite"))
    args = parser.parse_args()
    with Store(args.store, readonly=True) as store:
        trials = store.trials()
        cells = {c.hash: c for c in store.cells(status="done")}
    studies: dict[str, list] = defaultdict(list)
    for t in trials:
        studies[t.study].append(t)
    total_trials = total_cells = 0.0
    print(f"{'arm':58} {'trials':>6} {'pruned':>6} {'trial s':>8} {'cell s':>7} {'ratio':>6}")
    for ts in sorted(studies.values(), key=lambda ts: ts[0].arm):
        seconds = sum(t.record.get("seconds", 0.0) for t in ts)
        final = next((cells[t.record["final_hash"]] for t in ts if t.record.get("final_hash") in cells), None)
        cell_s = final.timings.get("total_s") if final else None
        ratio = f"{seconds / cell_s:6.2f}" if cell_s else "     -"
        print(f"{ts[0].arm:58} {len(ts):6d} {sum(t.state == 'pruned' for t in ts):6d} {seconds:8.1f} "
              f"{cell_s or 0:7.1f} {ratio}")
        if cell_s:
            total_trials += seconds
            total_cells += cell_s
    if total_cells:
        print(f"all arms with a final cell: tuning {total_trials:.0f} s = {total_trials / total_cells:.2f}x "
              f"the student cells' {total_cells:.0f} s")


if __name__ == "__main__":
    main()
