"""Panels belong to the settings they were computed under, and a leaderboard dir to one work dir.

A run under other settings (``n_test=12``) writes a page of its own; its
panels must be files of their own too, or the first page ends up linking a
picture drawn from the second run's models.
"""

from __future__ import annotations

import re

from tests.helpers import QUICK

#: A page's link to a cell's Score-CAM panel (the students table), and the cell hash in the file name.
SCORE_CAM_LINK = re.compile(r"\[score-cam\]\((panels/[^)]+)\)")
PANEL_HASH = re.compile(r"__([0-9a-f]{16})-\d+\.png$")


def test_runs_with_other_settings_draw_panels_of_their_own(run_cli, quick_run):
    boards = quick_run / "boards"
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(boards)]
    (first_link,) = SCORE_CAM_LINK.findall((boards / "synthetic-cxr.md").read_text())
    first_panel = (boards / first_link).read_bytes()

    again = run_cli([*QUICK, "--explainers", "score-cam", "--dataset-option", "synthetic-cxr.n_test=12", *dirs])
    assert again.exit_code == 0, again.err
    pages = sorted(boards.glob("synthetic-cxr*.md"))
    assert len(pages) == 2
    texts = {page.name: page.read_text() for page in pages}
    links = {name: SCORE_CAM_LINK.findall(text)[0] for name, text in texts.items()}
    assert len(set(links.values())) == 2, links  # one picture per settings, not one shared and overwritten
    assert first_link in links.values()
    for name, link in links.items():  # named by the hash of the cell it draws, which is on that page
        found = PANEL_HASH.search(link)
        assert found and f"`{found.group(1)}`" in texts[name].split("## Provenance")[1], (name, link)
        assert (boards / link).is_file()
    assert (boards / first_link).read_bytes() == first_panel  # the first page's picture is still its own


# ---- one work dir per leaderboard dir ---------------------------------------------------------------------


def test_a_leaderboard_dir_belongs_to_one_work_dir(tmp_path, capsys):
    import json
    import shutil

    import pytest

    from medkd_bench.errors import MedkdError
    from medkd_bench.report.board_owner import OWNER_FILE, claim_leaderboard_dir

    boards, a, b = tmp_path / "boards", tmp_path / "a", tmp_path / "b"
    for work in (a, b):
        work.mkdir()
        (work / "runs.sqlite").write_bytes(b"")
    claim_leaderboard_dir(boards, a)
    assert json.loads((boards / OWNER_FILE).read_text()) == {"work_dir": "../a"}  # relative: moves with both
    claim_leaderboard_dir(boards, a)
    with pytest.raises(MedkdError) as refused:
        claim_leaderboard_dir(boards, b)
    message = str(refused.value)
    assert f"holds the pages of work dir {a.resolve()}" in message and f"--work-dir {b.resolve()}" in message
    assert "pass another --leaderboard-dir" in message and "\n" not in message
    # Copied together (as tests copy a finished run), the copy's pages belong to the copy's work dir.
    shutil.copytree(tmp_path, tmp_path.parent / f"{tmp_path.name}-copy")
    claim_leaderboard_dir(tmp_path.parent / f"{tmp_path.name}-copy" / "boards", tmp_path.parent / f"{tmp_path.name}-copy" / "a")
    # A recorded work dir whose store is gone hands the folder over, with a warning.
    (a / "runs.sqlite").unlink()
    claim_leaderboard_dir(boards, b)
    assert "which has no run store now" in capsys.readouterr().err
    assert json.loads((boards / OWNER_FILE).read_text()) == {"work_dir": "../b"}


def test_two_work_dirs_cannot_render_into_one_leaderboard_dir(run_cli, quick_run):
    import shutil

    from tests.helpers import assert_one_line_error

    boards, work, other = quick_run / "boards", quick_run / "work", quick_run / "other"
    shutil.copytree(work, other)  # another store with rows of its own
    before = {p.name: p.read_bytes() for p in boards.glob("*.md")}
    result = run_cli(["leaderboard", "--work-dir", str(other), "--leaderboard-dir", str(boards)])
    assert_one_line_error(result, f"--leaderboard-dir {boards}: holds the pages of work dir {work.resolve()}",
                          f"--work-dir {other.resolve()}", "pass another --leaderboard-dir")
    assert {p.name: p.read_bytes() for p in boards.glob("*.md")} == before  # nothing replaced
    fresh = quick_run / "fresh"
    result = run_cli([*QUICK, "--work-dir", str(fresh), "--leaderboard-dir", str(boards)])
    assert_one_line_error(result, f"holds the pages of work dir {work.resolve()}", f"--work-dir {fresh.resolve()}")
    assert not (fresh / "runs.sqlite").exists() and not (fresh / "checkpoints").exists()  # before any work
    again = run_cli(["leaderboard", "--work-dir", str(work), "--leaderboard-dir", str(boards)])
    assert again.exit_code == 0, again.err  # its own work dir renders as before
