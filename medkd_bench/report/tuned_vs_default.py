"""Paper defaults against tuned options: each method's gain both ways, side by side (issue 29).

A method ranking made with each paper's default loss weights ranks, in part,
how well those defaults, chosen on CIFAR-100 and ImageNet, transfer to the
dataset. ``run --tune N`` gives every method and the label-only baseline the
same budget of trials; its cells land on a page of their own, since their
settings differ (a gain never subtracts a baseline trained otherwise). A
reader's question, "does tuning change which method wins?", needs both
rankings in one table: this section, on both pages, puts per teacher and
method the gain over label-only with the paper's defaults and with the tuned
options (each against its own label-only student: the tuned baseline is tuned
too), and each method's rank among the methods with that teacher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medkd_bench.evaluate import stats
from medkd_bench.report.method_summary import method_ranks
from medkd_bench.report.pages_by_settings import Page
from medkd_bench.report.row_stats import gain_text
from medkd_bench.run.store import CellRecord
from medkd_bench.specs import BASE_METHODS

Key = tuple[str, str, str]  # (method, teacher, student)

#: The settings a tuned run adds: without them, a tuned page's settings are its default page's.
TUNING_SETTINGS = ("tuned", "tune_trials")


def _untuned(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in TUNING_SETTINGS}


def counterpart(page: Page, pages: Sequence[Page]) -> Page | None:
    """The page whose cells differ from ``page``'s by tuning alone: a default page's tuned page, and back.

    Tuned runs of other arms (another ``--methods``) choose other options, so
    make pages of their own: a default page faces the most recent.
    """
    tuned = bool(page.settings.get("tuned"))
    twins = [p for p in pages if p is not page and p.dataset == page.dataset
             and bool(p.settings.get("tuned")) != tuned and _untuned(p.settings) == _untuned(page.settings)]
    return max(twins, key=lambda p: p.latest_run, default=None)


@dataclass(frozen=True)
class Side:
    """One page's rows as the comparison reads them."""

    keys: Sequence[Key]
    accuracy: Callable[[Key], float]
    gains: Mapping[Key, dict[str, Any] | None]
    scores: Mapping[Key, dict[str, dict[str, Any]]]


def _ranks(side: Side, student: str, teacher: str) -> dict[str, float]:
    """Each method's rank among the methods with ``teacher`` (1 = most accurate; ties share the mean rank)."""
    mine = [k for k in side.keys if k[1] == teacher and k[2] == student]
    return {k[0]: r for k, r in method_ranks(mine, side.accuracy).items()}


def comparison(default: Side, tuned: Side,
               effect: Callable[[Key], dict[str, Any] | None] = lambda key: None) -> list[dict[str, Any]]:
    """Per student: its label-only accuracy both ways, one row per (teacher, method), and each teacher's best.

    Rows follow the tuned ranking (teacher by teacher); a row missing on one
    side (not run, or failed) shows ``-`` there. ``effect(key)``: what tuning
    did for a row, its tuned minus its paper-default accuracy, paired by seed
    and test image like a gain (``None`` when a side lacks the row).
    """
    out = []
    distilled = [k for k in {*default.keys, *tuned.keys} if k[0] not in BASE_METHODS]
    for student in sorted({k[2] for k in distilled}):
        base = ("label-only", "", student)
        rows, best = [], []
        for teacher in sorted({k[1] for k in distilled if k[2] == student}):
            ranked = {"default": _ranks(default, student, teacher), "tuned": _ranks(tuned, student, teacher)}
            methods = sorted({k[0] for k in distilled if k[1:] == (teacher, student)},
                             key=lambda m: (ranked["tuned"].get(m, float("inf")), ranked["default"].get(m, 0.0), m))
            for m in methods:
                key = (m, teacher, student)
                rows.append({"teacher": teacher, "method": m, "effect": _effect_text(effect(key)),
                             **{side: _gain_cell(s, key, ranked[side].get(m))
                                for side, s in (("default", default), ("tuned", tuned))}})
            both = sorted(set(ranked["default"]) & set(ranked["tuned"]))  # a winner among methods run both ways
            if len(both) > 1:
                winners = {side: min(both, key=r.__getitem__) for side, r in ranked.items()}
                best.append({"teacher": teacher, "n": len(both), **winners,
                             "same": winners["default"] == winners["tuned"]})
        out.append({"student": student, "rows": rows, "best": best, "baseline_effect": _effect_text(effect(base)),
                    "baseline": {side: stats.format_ci(s.scores[base]["accuracy"]) if base in s.scores else "-"
                                 for side, s in (("default", default), ("tuned", tuned))}})
    return out


def _effect_text(effect: dict[str, Any] | None) -> str:
    return gain_text(effect) if effect else "-"


def _gain_cell(side: Side, key: Key, rank: float | None) -> dict[str, str]:
    gain = side.gains.get(key)
    return {"gain": gain_text(gain) if gain else "-", "rank": f"{rank:g}" if rank is not None else "-"}


def section(page: Page, other: Page | None, board: Any, other_board: Any,
            paired: Callable[[list[CellRecord], list[CellRecord]], dict[str, Any] | None]) -> dict[str, Any] | None:
    """What the template needs for ``page`` (a default or a tuned page) beside ``other``, its counterpart.

    ``board`` and ``other_board`` are the two pages' scored rows (``groups``,
    ``accuracy``, ``gains``, ``scores``, as :mod:`.leaderboard` builds them);
    ``paired(a, b)``: a's accuracy minus b's, paired by seed and test image
    (:meth:`.row_stats.RowStats.gain`).
    """
    if other is None:
        return None
    here_tuned = bool(page.settings.get("tuned"))
    tuned, default = (board, other_board) if here_tuned else (other_board, board)

    def effect(key: Key) -> dict[str, Any] | None:
        if key not in tuned.groups or key not in default.groups:
            return None
        return paired(tuned.groups[key], default.groups[key])

    students = comparison(*(Side(list(b.groups), b.accuracy, b.gains, b.scores) for b in (default, tuned)), effect)
    if not any(s["rows"] for s in students):
        return None
    return {"students": students, "other": other.file, "here_tuned": here_tuned,
            "trials": (page if here_tuned else other).settings.get("tune_trials")}


def glance_line(versus: dict[str, Any] | None) -> str | None:
    """The "At a glance" line pointing at the other page and saying whether tuning changed any winner."""
    if versus is None:
        return None
    other = ("the same students with each paper's default options" if versus["here_tuned"]
             else f"the same students tuned (`--tune {versus['trials']}`)")
    best = [b for s in versus["students"] for b in s["best"]]
    changed = sum(not b["same"] for b in best)
    verdict = (f"; tuning changed the most accurate method for {changed} of {len(best)} teacher"
               f"{'s' if len(best) > 1 else ''}" if best else "")
    return (f"[{other[0].upper()}{other[1:]}]({versus['other']}){verdict}: "
            "see [Paper defaults against tuning](#paper-defaults-against-tuning).")
