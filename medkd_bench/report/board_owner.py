"""One work dir per leaderboard dir: pages rendered from two stores into one folder would replace each other.

Page names (``<dataset>.md``, ``<dataset>.<id>.md``), the index and
``results.csv`` are derived from one store's rows, so a second work dir
rendering into the same folder silently overwrites the first one's pages and
index with its own. The first render records its work dir in the folder
(:data:`OWNER_FILE`, as a path relative to the folder, so a work dir and its
leaderboards moved or copied together stay paired); any later render from
another work dir whose store still exists is refused with one line naming
both work dirs and ``--leaderboard-dir``. A recorded work dir without a store
(deleted, or on another machine) hands the folder over, with a warning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.messages import warn

#: The file in a leaderboard dir that names the work dir its pages are rendered from.
OWNER_FILE = ".medkd-work-dir.json"
#: The run store's file name inside a work dir (as ``run`` and ``leaderboard`` open it).
STORE_FILE = "runs.sqlite"


def recorded_work_dir(board_dir: Path) -> Path | None:
    """The work dir ``board_dir``'s pages were rendered from, resolved; None if none is recorded (or unreadable)."""
    try:
        recorded = json.loads((board_dir / OWNER_FILE).read_text(encoding="utf-8"))["work_dir"]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: nothing to protect by it
        return None
    if not isinstance(recorded, str) or not recorded:
        return None
    return (board_dir.resolve() / recorded).resolve()


def claim_leaderboard_dir(board_dir: Path, work_dir: Path) -> None:
    """Record ``work_dir`` as the source of ``board_dir``'s pages; refuse if another work dir's pages are there.

    Called before a run's first cell and by every render, so a clash stops before
    any work and no page is ever replaced by another store's.
    """
    board_dir, mine = Path(board_dir), Path(work_dir).resolve()
    owner = recorded_work_dir(board_dir)
    if owner == mine:
        return
    if owner is not None:
        if (owner / STORE_FILE).exists():
            raise MedkdError(f"--leaderboard-dir {board_dir}: holds the pages of work dir {owner}, not of "
                             f"--work-dir {mine}; pass another --leaderboard-dir (the two work dirs' pages and "
                             "index would replace each other)")
        warn(f"--leaderboard-dir {board_dir}: its pages came from work dir {owner}, which has no run store now; "
             f"they are rendered from {mine} from now on")
    try:
        recorded = os.path.relpath(mine, board_dir.resolve())
    except ValueError:  # another drive (Windows): no relative path
        recorded = str(mine)
    board_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(board_dir / OWNER_FILE, json.dumps({"work_dir": recorded}) + "\n")
