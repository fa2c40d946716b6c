"""The leaderboard's method summary: each distillation method's gain over label-only per teacher, and its rank.

A reader choosing a method wants one row per method: what it adds over the
same student trained on labels alone with each teacher (CI over seeds and test images
and McNemar p, as in the students table) and how it ranks among the methods
across teachers (1 = most accurate; ties share the mean rank).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scipy.stats import rankdata

from medkd_bench.report.row_stats import gain_text, mcnemar_text
from medkd_bench.specs import BASE_METHODS

Key = tuple[str, str, str]  # (method, teacher, student)


def method_ranks(keys: Sequence[Key], accuracy: Callable[[Key], float]) -> dict[Key, float]:
    """Each distilled row's rank among the methods with its teacher and student (1 = most accurate; ties share
    the mean rank): a method is compared with the other methods distilling the same teacher, never across teachers."""
    distilled = [k for k in keys if k[0] not in BASE_METHODS]
    ranks: dict[Key, float] = {}
    for pair in dict.fromkeys((k[1], k[2]) for k in distilled):
        present = [k for k in distilled if (k[1], k[2]) == pair]
        ranks.update(zip(present, map(float, rankdata([-accuracy(k) for k in present])), strict=True))
    return ranks


def weak_teachers(keys: list[Key], accuracy: Callable[[Key], float]) -> dict[tuple[str, str], bool]:
    """``(teacher, student) -> True`` where the teacher is less accurate than the label-only student.

    KD is then expected to hurt: the soft targets carry more error than the labels.
    """
    teachers = {k[1]: accuracy(k) for k in keys if k[0] == "teacher"}
    baselines = {k[2]: accuracy(k) for k in keys if k[0] == "label-only"}
    return {(t, s): teachers[t] < baselines[s] for t in teachers for s in baselines}


def method_summary(keys: list[Key], accuracy: Callable[[Key], float], gains: Mapping[Key, dict[str, Any] | None],
                   weak: Mapping[tuple[str, str], bool]) -> list[dict[str, Any]]:
    """One entry per student: its teachers (in order) and one row per method."""
    distilled = [k for k in keys if k[0] not in BASE_METHODS]
    out = []
    for student in sorted({k[2] for k in distilled}):
        mine = [k for k in distilled if k[2] == student]
        teachers = sorted({k[1] for k in mine})
        methods = sorted({k[0] for k in mine})
        ranks = method_ranks(mine, accuracy)
        rows = []
        for m in methods:
            cells = []
            for t in teachers:
                gain = gains.get((m, t, student))
                p = mcnemar_text(gain)
                cells.append("-" if (m, t, student) not in ranks or not gain else
                             gain_text(gain) + ("" if p == "-" else f" (p {p})"))
            mine_ranks = [ranks[(m, t, student)] for t in teachers if (m, t, student) in ranks]
            mine_gains = [g["mean"] for t in teachers if (g := gains.get((m, t, student)))]
            rows.append({
                "method": m, "cells": cells,
                # + 0.0 turns a rounded -0.0 into 0.0: no "-0.0" for gains that cancel out.
                "mean_gain": f"{round(100 * sum(mine_gains) / len(mine_gains), 1) + 0.0:+.1f}" if mine_gains else "-",
                "mean_rank": f"{sum(mine_ranks) / len(mine_ranks):.2f}" if mine_ranks else "-",
                "n_teachers": len(mine_ranks),
            })
        rows.sort(key=lambda r: (r["mean_rank"] == "-", float(r["mean_rank"]) if r["mean_rank"] != "-" else 0.0))
        out.append({"student": student,
                    "teachers": [t + (" ‡" if weak.get((t, student)) else "") for t in teachers],
                    "rows": rows})
    return out
