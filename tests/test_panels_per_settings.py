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
