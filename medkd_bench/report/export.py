"""Tidy exports: one row per stored cell, with stable column names, as CSV or JSON.

What a user builds on top of the benchmark (a pandas frame, a paper table)
starts here, not from the markdown. Each row is one cell (dataset, method,
teacher, student, seed) as it appears on a leaderboard page: a cell planned
under two sets of settings appears once per set (``settings`` says which),
and its KD gain is against the label-only student of the same page and seed.
Fractions stay fractions (accuracy 0.913, not 91.3); a missing value is an
empty CSV field or a JSON ``null``. ``COLUMNS`` is the documented, ordered
column set; explainer columns follow it as ``<explainer>.<figure>``
(``EXPLAINER_FIGURES``), one group per explainer in the store.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.registry import Registry
from medkd_bench.report.convergence import epochs_run
from medkd_bench.report.pages_by_settings import latest_records, pages_for
from medkd_bench.report.row_stats import RowStats
from medkd_bench.report.trust import detectable_gain, taught_by_earlier_checkpoint
from medkd_bench.run.store import CellRecord, ExplanationRecord, Store
from medkd_bench.specs import BASE_METHODS
from medkd_bench.tune.space import arm_of

FORMATS = ("csv", "json")


def _with_ci(name: str) -> tuple[str, str, str]:
    return name, f"{name}_ci_low", f"{name}_ci_high"


#: Every row's columns, in order (docs/results.md, "Export columns", documents each one).
COLUMNS: tuple[str, ...] = (
    "dataset", "settings", "method", "teacher", "student", "model", "role", "seed", "status", "error",
    "config_hash", "n_test",
    *_with_ci("accuracy"), *_with_ci("macro_f1"), *_with_ci("roc_auc"), *_with_ci("ece"),
    *_with_ci("sensitivity_mean"), *_with_ci("specificity_mean"), "sensitivity_by_class", "specificity_by_class",
    *_with_ci("kd_gain"), "mcnemar_p", "mcnemar_mid_p",
    "params_m", "gmacs", "latency_ms", "latency_iqr_ms", "throughput_img_s",
    "latency_deployed_ms", "latency_deployed_iqr_ms", "latency_deployed_method",
    "latency_deployed_max_abs_logit_diff",
    "onnx_latency_ms", "onnx_latency_iqr_ms", "onnx_max_abs_logit_diff", "precision", "machine", "timed_on",
    "train_s", "train_cpu_s", "warmup_s", "best_epoch", "val_accuracy", "stopped", "epochs_run", "detectable_gain",
    "taught_by_earlier_teacher_checkpoint", "tuned", "tune_trials",
)

#: Per explainer, the cell's mean figures (columns ``<explainer>.<figure>``), from its stored explanation.
EXPLAINER_FIGURES: dict[str, tuple[str, ...]] = {
    "spearman_vs_teacher": ("agreement", "spearman"),
    "top20_iou_vs_teacher": ("agreement", "top20_iou"),
    "label_only_spearman_vs_teacher": ("label_only_agreement", "spearman"),
    "label_only_top20_iou_vs_teacher": ("label_only_agreement", "top20_iou"),
    "energy_pointing_game": ("localisation", "energy_pointing_game"),
    "pointing_game": ("localisation", "pointing_game"),
    "mask_area_chance": ("localisation", "chance"),
    "road": ("", "road"),
    "sanity_spearman": ("sanity", "spearman"),
}


def _ci_fields(name: str, summary: dict[str, Any] | None) -> dict[str, Any]:
    summary = summary or {}
    ci = summary.get("ci") or (None, None)
    return {name: summary.get("mean"), f"{name}_ci_low": ci[0], f"{name}_ci_high": ci[1]}


def _by_class(classes: Sequence[str], summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{class: {"mean", "ci_low", "ci_high"}}`` for the per-class sensitivity or specificity."""
    return {c: {"mean": s.get("mean"), "ci_low": (s.get("ci") or (None, None))[0],
                "ci_high": (s.get("ci") or (None, None))[1]} for c, s in zip(classes, summaries, strict=False)}


def _explainer_fields(explanations: dict[str, ExplanationRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for explainer, e in explanations.items():
        for figure, (where, key) in EXPLAINER_FIGURES.items():
            source = e.metrics.get(where, {}) if where else e.metrics
            value = (source.get(key) or {}) if isinstance(source, dict) else {}
            out[f"{explainer}.{figure}"] = value.get("mean") if isinstance(value, dict) else None
    return out


def cell_row(r: CellRecord, settings: str, classes: Sequence[str], row_stats: RowStats,
             baseline: list[CellRecord] | None, explanations: dict[str, ExplanationRecord]) -> dict[str, Any]:
    """One cell's export row (see :data:`COLUMNS`)."""
    m = r.metrics
    row: dict[str, Any] = {
        "dataset": r.dataset, "settings": settings, "method": r.method, "teacher": r.teacher or None,
        "student": r.student or None, "model": r.teacher if r.method == "teacher" else r.student,
        "role": "teacher" if r.method == "teacher" else "student", "seed": r.seed, "status": r.status,
        "error": r.error, "config_hash": r.hash, "n_test": m.get("n_test"),
    }
    done = r.status == "done"
    k = len(classes) or len(m.get("per_class_f1", {})) or 1
    scores = row_stats.scores([r], k) if done else {}
    clinical = (row_stats.clinical([r], k) if done else None) or {}
    gain = row_stats.gain([r], baseline) if done and r.method not in BASE_METHODS else None
    mcnemar = ((gain or {}).get("mcnemar") or [None])[0] or {}
    row.update({**_ci_fields("accuracy", scores.get("accuracy")), **_ci_fields("macro_f1", scores.get("macro_f1")),
                **_ci_fields("roc_auc", clinical.get("roc_auc")), **_ci_fields("ece", clinical.get("ece")),
                **_ci_fields("sensitivity_mean", clinical.get("mean_sensitivity")),
                **_ci_fields("specificity_mean", clinical.get("mean_specificity")),
                "sensitivity_by_class": _by_class(classes, clinical["sensitivity"]) if clinical else None,
                "specificity_by_class": _by_class(classes, clinical["specificity"]) if clinical else None,
                **_ci_fields("kd_gain", gain),
                "mcnemar_p": mcnemar.get("p_exact"), "mcnemar_mid_p": mcnemar.get("p_mid")})
    if done:
        row.update({"params_m": m.get("params_m"), "gmacs": m.get("gmacs"), "latency_ms": m.get("latency_ms"),
                    "latency_iqr_ms": m.get("latency_iqr_ms"), "throughput_img_s": m.get("throughput"),
                    **{c: m.get(c) for c in ("latency_deployed_ms", "latency_deployed_iqr_ms",
                                             "latency_deployed_method", "latency_deployed_max_abs_logit_diff")},
                    "onnx_latency_ms": m.get("onnx_latency_ms"), "onnx_latency_iqr_ms": m.get("onnx_latency_iqr_ms"),
                    "onnx_max_abs_logit_diff": m.get("onnx_max_abs_logit_diff"),
                    "precision": m.get("precision"), "machine": m.get("machine"),
                    "timed_on": m.get("timed_on", m.get("machine")), "train_s": r.timings.get("train_s"),
                    "train_cpu_s": r.timings.get("train_cpu_s"), "warmup_s": r.timings.get("warmup_s"),
                    "best_epoch": m.get("best_epoch"), "val_accuracy": m.get("val_accuracy"),
                    # Stored by the training loop; cells stored before it have no `stopped` (empty here).
                    "stopped": m.get("stopped"), "epochs_run": epochs_run(r), "detectable_gain": detectable_gain(gain)})
    row.update(_explainer_fields(explanations))
    return row


def _tuning_fields(r: CellRecord, settings: dict[str, Any]) -> dict[str, Any]:
    """Whether the row's options were chosen by ``--tune`` (teachers never are), and with how many trials."""
    if r.method == "teacher":
        return {"tuned": False, "tune_trials": None}
    arm = arm_of(r)
    tuned = arm is not None and arm.key in (settings.get("tuned") or {})
    return {"tuned": tuned, "tune_trials": settings.get("tune_trials") if tuned else None}


def export_rows(registry: Registry, records: list[CellRecord], explanations: list[ExplanationRecord],
                runs: dict[str, list[tuple[int, dict[str, Any]]]], row_stats: RowStats) -> list[dict[str, Any]]:
    """Every cell of every leaderboard page, in page order, with the same column set (missing figures None)."""
    from medkd_bench.report.explanation_tables import latest_explanations

    by_cell: dict[str, dict[str, ExplanationRecord]] = {}
    for (cell_hash, explainer), e in sorted(latest_explanations(explanations).items()):
        by_cell.setdefault(cell_hash, {})[explainer] = e
    explainers = sorted({e for per_cell in by_cell.values() for e in per_cell})
    columns = [*COLUMNS, *(f"{e}.{f}" for e in explainers for f in EXPLAINER_FIGURES)]
    rows = []
    for dataset in sorted({r.dataset for r in records}):
        spec = registry.datasets.get(dataset)
        for page in pages_for(dataset, [r for r in records if r.dataset == dataset], runs, spec):
            latest = sorted(latest_records(page.records).values(),
                            key=lambda r: (r.method != "teacher", r.method != "label-only", r.student, r.method,
                                           r.teacher, r.seed))
            baselines = {(r.student, r.seed): [r] for r in latest if r.method == "label-only" and r.status == "done"}
            teachers = {r.hash: r for r in latest if r.method == "teacher" and r.status == "done"}
            classes = list(spec.classes) if spec else list(next(iter(latest)).metrics.get("per_class_f1", {}))
            for r in latest:
                row = cell_row(r, page.settings_text, classes, row_stats, baselines.get((r.student, r.seed)),
                               by_cell.get(r.hash, {}))
                row.update(_tuning_fields(r, page.settings))
                if r.status == "done":
                    row["taught_by_earlier_teacher_checkpoint"] = taught_by_earlier_checkpoint(
                        r, teachers.get(r.config.get("teacher", "")))
                rows.append({c: row.get(c) for c in columns})
    return rows


def _csv_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip text: the CSV holds the stored value exactly
    return str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header; nested per-class figures as JSON text."""
    out = io.StringIO()
    columns = list(rows[0]) if rows else list(COLUMNS)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in columns])
    return out.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    """A JSON array of row objects (non-finite numbers as null: JSON has no NaN)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return json.dumps([{k: clean(v) for k, v in row.items()} for row in rows], indent=1) + "\n"


def export_text(registry: Registry, store: Store, fmt: str, row_stats: RowStats) -> str:
    """The whole store's export in ``fmt`` (``csv`` or ``json``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    rows = export_rows(registry, store.cells(), store.explanations(), store.run_settings(), row_stats)
    return to_csv(rows) if fmt == "csv" else to_json(rows)


def write_export(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)
