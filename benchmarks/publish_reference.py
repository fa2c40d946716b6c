"""Publish a reference run's finished cells as the committed leaderboards, while the run goes on.

The reference matrix takes tens of core-hours, so it runs in parts, each stopped at a session's end
and resumed from its store. Only what is committed survives a machine that is replaced between
parts, so every part publishes what it finished: this copies the reference store (SQLite's online
backup, consistent while the run writes to it), keeps only its done cells, their explanations and
the runs that planned them, adds every cell already published that the run does not hold (a part
run on a new machine starts from an empty store: session 23's and session 31's machines were
replaced, their stores with them), renders the pages from the result alone (as any reader of the
repository can), copies the explanation panels those pages link and removes the panels no page
links. A cell in both is the run's (it may have been trained again); a student distilled from an
earlier checkpoint of its teacher than the published one is flagged on the pages, as in any store.

    python benchmarks/publish_reference.py --from /work/regen/.medkd-ref --panels /tmp/lb-ref \\
        --to leaderboards

``--panels`` is the reference run's ``--leaderboard-dir`` (where it drew its explanation panels).
Run the committed-leaderboard tests afterwards (``pytest tests/test_committed_leaderboards.py``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from medkd_bench.run.store import Store

#: An explanation panel's link on a page: panels/<dataset>/<explainer>/<cell>.png.
PANEL_LINK = re.compile(r"panels/[^/()\s\"]+/[^/()\s\"]+/[^/()\s\"]+\.png")

#: What a published store keeps of each table: rows of done cells and what refers to them.
PRUNE = (
    "DELETE FROM cells WHERE status != 'done'",
    "UPDATE cells SET retrain_status = NULL, retrain_error = NULL, retrain_started_at = NULL",
    "DELETE FROM explanations WHERE cell_hash NOT IN (SELECT hash FROM cells)",
    "DELETE FROM run_cells WHERE cell_hash NOT IN (SELECT hash FROM cells)",
    "DELETE FROM runs WHERE id NOT IN (SELECT run_id FROM run_cells)",
)


#: What a published store adds of the store published before: its cells the run does not hold, their
#: explanations, its runs (numbered after the run's own) and their links, its tuning trials.
MERGE = (
    "CREATE TEMP TABLE run_hashes AS SELECT hash FROM cells",
    "INSERT INTO cells SELECT * FROM published.cells WHERE hash NOT IN (SELECT hash FROM run_hashes)",
    "INSERT INTO explanations SELECT * FROM published.explanations "
    "WHERE cell_hash NOT IN (SELECT hash FROM run_hashes)",
    "CREATE TEMP TABLE run_id_offset AS SELECT coalesce(max(id), 0) AS n FROM runs",
    "INSERT INTO runs (id, settings, started_at) SELECT id + (SELECT n FROM run_id_offset), settings, started_at "
    "FROM published.runs",
    "INSERT INTO run_cells SELECT run_id + (SELECT n FROM run_id_offset), cell_hash FROM published.run_cells "
    "WHERE cell_hash NOT IN (SELECT hash FROM run_hashes)",
    "INSERT OR IGNORE INTO trials SELECT * FROM published.trials",
)


def copy_done_cells(source: Path, target: Path) -> dict[str, int]:
    """``target`` becomes a copy of the store ``source`` with only its done cells, plus the cells of the
    store already at ``target`` that ``source`` does not hold; rows kept per table."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    src, con = sqlite3.connect(f"file:{source}?mode=ro", uri=True), sqlite3.connect(partial)
    try:
        src.backup(con)
        with con:
            for statement in PRUNE:  # the run's unfinished cells and what refers to them, before the merge
                con.execute(statement)
        if target.is_file():
            Store(partial).close()  # both at this medkd-bench's schema (columns added since are added)
            Store(target).close()
            con.execute("ATTACH DATABASE ? AS published", (str(target),))
            with con:
                for statement in MERGE:
                    con.execute(statement)
            con.execute("DETACH DATABASE published")
            with con:
                for statement in PRUNE:  # the published runs whose every cell the run holds
                    con.execute(statement)
        con.execute("PRAGMA journal_mode=DELETE")  # one file in git, no -wal beside it
        con.execute("VACUUM")
        kept = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 (fixed names)
                for t in ("cells", "explanations", "runs", "run_cells")}
    finally:
        src.close()
        con.close()
    partial.replace(target)
    return kept


def sync_panels(source_boards: Path, boards: Path) -> tuple[int, int]:
    """Copy the explanation panels the rendered pages link from ``source_boards``; delete the others; counts.

    The store names a panel for every seed's explanation; a page links seed 0's, so only those are
    committed (the curves and Pareto PNGs beside them are drawn by the render itself).
    """
    linked = {m for page in boards.glob("*.md") for m in PANEL_LINK.findall(page.read_text(encoding="utf-8"))}
    copied = 0
    for rel in sorted(linked):
        src, dst = source_boards / rel, boards / rel
        if src.is_file() and (not dst.is_file() or src.read_bytes() != dst.read_bytes()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied += 1
        elif not dst.is_file():
            sys.exit(f"publish_reference: a page links {rel}, which is in neither {source_boards} nor {boards}")
    removed = 0
    for png in (boards / "panels").glob("*/*/*.png"):  # panels/<dataset>/<explainer>/<cell>.png
        if png.relative_to(boards).as_posix() not in linked:
            png.unlink()
            removed += 1
    return copied, removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="the reference run's --work-dir")
    parser.add_argument("--panels", type=Path, required=True, help="the reference run's --leaderboard-dir")
    parser.add_argument("--to", type=Path, default=Path("leaderboards"), help="the committed leaderboard folder")
    args = parser.parse_args(argv)
    source = args.source / "runs.sqlite"
    if not source.is_file():
        parser.error(f"--from {args.source}: no runs.sqlite there")
    store_dir = args.to / "store"
    kept = copy_done_cells(source, store_dir / "runs.sqlite")
    subprocess.run([sys.executable, "-m", "medkd_bench", "leaderboard", "--work-dir", str(store_dir),
                    "--leaderboard-dir", str(args.to)], check=True)
    copied, removed = sync_panels(args.panels, args.to)
    (args.to / ".medkd-work-dir.json").unlink(missing_ok=True)  # names this checkout's path: never committed
    print(f"published {kept['cells']} done cells ({kept['explanations']} explanations, {kept['runs']} runs); "
          f"panels: {copied} copied, {removed} removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
