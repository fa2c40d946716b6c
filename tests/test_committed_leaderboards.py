"""The committed leaderboards are exactly what ``medkd-bench leaderboard`` renders from the committed store.

The reference run is made in parts over several sessions, on machines whose checkpoints do not
survive; what survives is its run store, committed as ``leaderboards/store/runs.sqlite``. This
test renders that store into a temporary folder and compares every page and ``results.csv`` with
the committed ones, so no committed figure can be edited by hand or left stale after the store
changes, and a reader can recompute any figure from the raw rows (``medkd-bench export --work-dir
leaderboards/store``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOARDS = REPO / "leaderboards"
STORE_DIR = BOARDS / "store"


def _rendered_files(folder: Path) -> dict[str, str]:
    files = sorted(folder.glob("*.md")) + [folder / "results.csv"]
    return {p.name: p.read_text(encoding="utf-8") for p in files if p.is_file()}


@pytest.mark.slow
def test_committed_pages_are_rendered_from_the_committed_store(tmp_path, run_cli):
    from medkd_bench.report.board_owner import recorded_work_dir

    owner = recorded_work_dir(BOARDS)  # the owner file is not committed: a clean clone has none
    if owner is not None and owner != STORE_DIR.resolve():
        pytest.skip(f"leaderboards/ holds pages rendered from {owner} (a run in this checkout), not the committed ones")
    assert (STORE_DIR / "runs.sqlite").is_file(), "leaderboards/store/runs.sqlite: the reference store is not committed"
    out = tmp_path / "boards"
    result = run_cli(["leaderboard", "--work-dir", str(STORE_DIR), "--leaderboard-dir", str(out)])
    assert result.exit_code == 0, result.err
    committed, rendered = _rendered_files(BOARDS), _rendered_files(out)
    assert sorted(committed) == sorted(rendered), "pages committed and pages the store renders differ"
    for name, text in rendered.items():
        assert committed[name] == text, f"leaderboards/{name} is not what the committed store renders: re-render it"
    # Every plot a page shows is committed beside it.
    for name, text in rendered.items():
        for plot in sorted({line.split("](", 1)[1].split(")", 1)[0] for line in text.splitlines()
                            if line.startswith("![") and "](plots/" in line}):
            assert (BOARDS / plot).is_file(), f"leaderboards/{name} shows {plot}, which is not committed"
