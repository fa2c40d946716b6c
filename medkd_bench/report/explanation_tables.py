"""The leaderboard's explanation tables: agreement, localisation, faithfulness and sanity per explainer."""

from __future__ import annotations

from typing import Any

from medkd_bench.explain.agreement import format_summary
from medkd_bench.report.format import method_label
from medkd_bench.run.store import CellRecord, ExplanationRecord


def _epg_vs_chance(loc: dict[str, Any]) -> str:
    """``0.33 [0.29, 0.37] (chance 0.20)``: one cell for a mask beside the main one."""
    epg = format_summary(loc.get("energy_pointing_game"))
    chance = loc.get("chance") or {}
    return epg if epg == "-" or chance.get("mean") is None else f"{epg} (chance {chance['mean']:.2f})"


def latest_explanations(explanations: list[ExplanationRecord]) -> dict[tuple[str, str], ExplanationRecord]:
    """The latest finished explanation per (cell, explainer): a later ``--explain-images N`` run replaces the default."""
    latest: dict[tuple[str, str], ExplanationRecord] = {}
    for e in sorted(explanations, key=lambda e: e.finished_at or 0.0):
        if e.status == "done":
            latest[(e.cell_hash, e.explainer)] = e
    return latest


def explanation_tables(done: list[CellRecord], explanations: list[ExplanationRecord]) -> list[dict[str, Any]]:
    """One entry per explainer: agreement rows (KD pairs) and per-model rows (per seed when there are several)."""
    with_seed = len({r.seed for r in done}) > 1
    by_cell = latest_explanations(explanations)
    out = []
    for explainer in sorted({k[1] for k in by_cell}):
        rows, agreement_rows, panels = [], [], []
        n_images = n_sanity = 0
        mask = None
        other_masks: list[str] = []
        order = sorted(done, key=lambda r: (r.method != "teacher", r.method != "label-only", r.teacher, r.student,
                                            r.seed))
        for r in order:
            e = by_cell.get((r.hash, explainer))
            if e is None:
                continue
            m = e.metrics
            n_images = max(n_images, m.get("n_images", 0))
            n_sanity = max(n_sanity, m.get("n_sanity", 0))
            loc = m.get("localisation", {})
            mask = loc.get("mask", mask)
            other = m.get("localisation_other", {})
            other_masks += [k for k in other if k not in other_masks]
            rows.append({
                "name": r.teacher if r.method == "teacher" else r.student,
                "method": method_label(r, with_seed),
                "epg": format_summary(loc.get("energy_pointing_game")),
                "pg": format_summary(loc.get("pointing_game")),
                "chance": format_summary(loc.get("chance")),
                "other": {k: _epg_vs_chance(v) for k, v in other.items()},
                "road": format_summary(m.get("road"), 3),
                "sanity": format_summary(m.get("sanity", {}).get("spearman")),
            })
            if r.method == "kd":
                kd, base = m.get("agreement", {}), m.get("label_only_agreement", {})
                agreement_rows.append({
                    "teacher": r.teacher, "student": r.student + (f" (seed {r.seed})" if with_seed else ""),
                    "sp_kd": format_summary(kd.get("spearman")), "sp_base": format_summary(base.get("spearman")),
                    "iou_kd": format_summary(kd.get("top20_iou")), "iou_base": format_summary(base.get("top20_iou")),
                })
                if e.artifacts.get("panel"):
                    title = f"{r.teacher} -> {r.student}" + (f", seed {r.seed}" if with_seed else "")
                    panels.append({"title": title, "path": e.artifacts["panel"]})
        out.append({"name": explainer, "rows": rows, "agreement": agreement_rows, "panels": panels,
                    "n_images": n_images, "n_sanity": n_sanity, "mask": mask, "other_masks": other_masks})
    return out
