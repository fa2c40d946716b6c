"""The answer first: a page's "At a glance" lines, from the rows its tables show.

A reader opens a leaderboard to learn which teacher is best and whether
distilling into each student beat training it on labels alone. Those answers
are in the tables, but spread over 20 rows; these lines state them before the
setup, the plots and the tables. Every figure is copied from the table cells
(the same text, with the same flags), so the summary cannot disagree with
the tables below it; the only new numbers are counts of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from medkd_bench.evaluate.stats import SEEDS_AND_IMAGES
from medkd_bench.specs import BASE_METHODS

Key = tuple[str, str, str]  # (method, teacher, student), as in :mod:`.leaderboard`


def _verdicts(keys: list[Key], gains: Mapping[Key, dict[str, Any] | None]) -> str:
    """How many of a student's distilled rows gained, lost, or cannot be told from label-only (by the gain's CI)."""
    rows = "row" if len(keys) == 1 else "rows"
    tested = [g for k in keys if (g := gains.get(k)) and g.get("ci")]
    if tested and not any(g.get("ci_basis") == SEEDS_AND_IMAGES for g in tested):
        return (f"none of its {len(keys)} distilled {rows} is called better or worse than label-only: one training "
                "seed, and a seed's luck cannot be told from the method's effect (`--seeds 3` or more)")
    up = sum(1 for k in keys if (g := gains.get(k)) and g.get("significant") and g["mean"] > 0)
    down = sum(1 for k in keys if (g := gains.get(k)) and g.get("significant") and g["mean"] < 0)
    return (f"of its {len(keys)} distilled {rows}, {up} beat label-only (gain CI above 0 over seeds and test "
            f"images), {down} fell below it (CI below 0), {len(keys) - up - down} cannot be told from it")


def _one_seed(key: Key, keys: list[Key], gains: Mapping[Key, dict[str, Any] | None]) -> str:
    """`` (one seed)`` when the row's gain pairs one seed while other rows' pair several (a run in parts)."""
    seeds = {k: g.get("n_seeds", 0) for k in keys if (g := gains.get(k))}
    return " (one seed)" if seeds.get(key) == 1 and max(seeds.values()) > 1 else ""


def at_a_glance(teachers: Mapping[Key, Mapping[str, str]], students: Mapping[Key, Mapping[str, str]],
                accuracy: Callable[[Key], float], gains: Mapping[Key, dict[str, Any] | None],
                failed: int) -> list[str]:
    """Markdown lines: the most accurate teacher, then per student its label-only and best distilled rows."""
    lines = []
    if teachers:
        best = max(teachers, key=accuracy)
        lines.append(f"Most accurate teacher: **{teachers[best]['teacher']}**, {teachers[best]['acc']}"
                     + (f" (of {len(teachers)})" if len(teachers) > 1 else "") + ".")
    for student in dict.fromkeys(k[2] for k in students):
        base = students.get(("label-only", "", student))
        distilled = [k for k in students if k[2] == student and k[0] not in BASE_METHODS]
        text = f"**{student}**: label-only {base['acc'] if base else 'not run'}"
        if distilled:
            top = max(distilled, key=accuracy)
            row = students[top]
            text += (f"; most accurate distilled: {row['method']} from {row['teacher']}{_one_seed(top, distilled, gains)}"
                     f", {row['acc']}, gain {row['gain']} pp; {_verdicts(distilled, gains)}")
        lines.append(text + ".")
    if failed:
        lines.append(f"{failed} cell{'s' if failed > 1 else ''} failed: see [Failed cells](#failed-cells).")
    if not lines:
        lines.append("No finished cells yet.")
    return lines
