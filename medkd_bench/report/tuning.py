"""The "Tuning" section of a tuned page: per arm, the budget, the chosen options beside the default, and validation.

A tuned run (``run --tune N``) records each arm's chosen options in its settings;
the trials are in the run store. A page finds each arm's study through the
trial whose point gave one of the page's cells (its ``final_hash``), so it shows
the trials that chose what the page's rows were trained with, not another
tuning's of the same arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medkd_bench.run.cells import describe_model
from medkd_bench.run.store import CellRecord, TrialRecord
from medkd_bench.tune.options import parse_arm


def _text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in sorted(params.items()))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def tuning_rows(settings: dict[str, Any], records: Sequence[CellRecord],
                trials: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """One row per tuned arm of the page, in arm order; empty for an untuned page."""
    tuned: dict[str, dict[str, Any]] = settings.get("tuned") or {}
    budget = settings.get("tune_trials")
    if not tuned:
        return []
    page_hashes = {r.hash for r in records}
    study_of = {t.arm: t.study for t in trials if t.record.get("final_hash") in page_hashes}
    rows = []
    for arm, chosen in sorted(tuned.items()):
        parsed = parse_arm(arm)
        teacher, student, method = parsed.teacher, parsed.student, parsed.method
        mine = sorted((t for t in trials if t.study == study_of.get(arm)), key=lambda t: t.number)
        if budget:
            mine = mine[:budget]
        default = mine[0] if mine else None
        best = next((t for t in mine if t.state == "complete" and t.params == chosen), None)
        rows.append({
            "arm": describe_model(method, teacher, student),
            "trials": (f"{len(mine)} ({sum(t.state == 'complete' for t in mine)} complete, "
                       f"{sum(t.state == 'pruned' for t in mine)} pruned, {sum(t.state == 'failed' for t in mine)} "
                       "failed)") if mine else "not in this store",
            "chosen": _text(chosen),
            "default": _text(default.params) if default else "-",
            "same": default is not None and default.params == chosen,
            "validation": f"{_pct(default.value if default else None)} -> {_pct(best.value if best else None)}",
        })
    return rows


def tuning_note(settings: dict[str, Any]) -> str:
    """The page header's word on tuning: which rows are tuned and where the choices are."""
    if not settings.get("tuned"):
        return ""
    n = settings.get("tune_trials")
    if n:
        return f"student rows tuned, {n} trials per arm (chosen options: Tuning section)"
    return "student rows use an earlier tuning's choices, given with --tuned-option (Tuning section)"
