"""The leaderboard's explanation tables: agreement, localisation, faithfulness and sanity per explainer."""

from __future__ import annotations

from typing import Any

import numpy as np

from medkd_bench.explain.agreement import format_summary
from medkd_bench.report.format import method_label
from medkd_bench.run.store import CellRecord, ExplanationRecord
from medkd_bench.specs import BASE_METHODS


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
        teacher_locs: list[tuple[str, dict[str, Any], bool]] = []
        by_method: dict[str, dict[str, list[float]]] = {}
        baselines_seen: set[tuple[str, str, int]] = set()
        lowest_seed = min((r.seed for r in done), default=0)
        order = sorted(done, key=lambda r: (r.method != "teacher", r.method != "label-only", r.student, r.method,
                                            r.teacher, r.seed))
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
            if r.method == "teacher" and (above := above_chance(loc)) is not None:
                teacher_locs.append((r.teacher + (f" (seed {r.seed})" if with_seed else ""), loc, above))
            if r.method != "teacher":
                _collect(by_method.setdefault(r.method, {}), m, loc)
            if r.method not in BASE_METHODS:
                kd, base = m.get("agreement", {}), m.get("label_only_agreement", {})
                if (r.teacher, r.student, r.seed) not in baselines_seen:  # once per teacher, not per method
                    baselines_seen.add((r.teacher, r.student, r.seed))
                    _collect(by_method.setdefault("label-only", {}), {"agreement": base}, {})
                agreement_rows.append({
                    "teacher": r.teacher, "method": r.method,
                    "student": r.student + (f" (seed {r.seed})" if with_seed else ""),
                    "sp_kd": format_summary(kd.get("spearman")), "sp_base": format_summary(base.get("spearman")),
                    "iou_kd": format_summary(kd.get("top20_iou")), "iou_base": format_summary(base.get("top20_iou")),
                })
                if e.artifacts.get("panel") and r.seed == lowest_seed:
                    title = f"{r.teacher} -> {r.student} ({r.method})" + (f", seed {r.seed}" if with_seed else "")
                    panels.append({"title": title, "path": e.artifacts["panel"]})
        summary = [{"method": name, **{k: _mean_sd(v) for k, v in values.items()}}
                   for name, values in sorted(by_method.items(), key=lambda kv: kv[0] != "label-only")]
        out.append({"name": explainer, "rows": rows, "agreement": agreement_rows, "panels": panels, "by_method": summary,
                    "n_images": n_images, "n_sanity": n_sanity, "mask": mask, "other_masks": other_masks,
                    "verdict": localisation_verdict(explainer, mask, teacher_locs, n_images)})
    return out


def above_chance(loc: dict[str, Any]) -> bool | None:
    """Whether a model's maps put more saliency inside the mask than a uniform map: the energy pointing
    game's 95% CI lies above the mask's mean area share. None where either figure is missing."""
    lower = ((loc.get("energy_pointing_game") or {}).get("ci") or [None])[0]
    chance = (loc.get("chance") or {}).get("mean")
    if lower is None or chance is None or not (np.isfinite(lower) and np.isfinite(chance)):
        return None
    return bool(lower > chance)


def localisation_verdict(explainer: str, mask: str | None, teachers: list[tuple[str, dict[str, Any], bool]],
                         n_images: int) -> str | None:
    """Whether an explainer's teacher maps find the dataset's evidence at all, for "Can these comparisons be trusted?".

    ``teachers``: (name, localisation summary, :func:`above_chance`) of each teacher cell on the page. "Does the student
    look where the teacher looks" means something only if the teacher's maps point at the evidence.
    Measured on synthetic-cxr (benchmarks/RESULTS.md, session 14): the models do decide from the
    lesions (with the lesions removed, 65-82% of lesion images are called normal), yet Grad-CAM and
    Score-CAM maps at 64 px put 0.05-0.07 of their saliency in the lesions against a chance level of
    0.04, at stride 16 and at stride 8 alike. So a page says when its teachers' maps are at chance,
    and how far above it the best one is otherwise, instead of letting the agreement columns suggest a finding.
    """
    if mask is None or not teachers:
        return None
    above = [(name, loc) for name, loc, is_above in teachers if is_above]
    n = len(teachers)
    if above:
        name, loc = max(above, key=lambda t: t[1]["energy_pointing_game"]["mean"] / max(t[1]["chance"]["mean"], 1e-9))
        return (f"{explainer}: {len(above)} of {n} teacher cells put more of their saliency inside the `{mask}` mask "
                f"than a uniform map would (energy pointing game 95% CI above the chance level); the most, {name}, "
                f"{format_summary(loc['energy_pointing_game'])} against {loc['chance']['mean']:.2f} by chance.")
    return (f"{explainer}: no teacher's maps put more of their saliency inside the `{mask}` mask than a uniform map "
            f"would (energy pointing game 95% CI reaching the chance level in {n} of {n} teacher cells, "
            f"{n_images} images each). At this image size the maps do not show where any model looks, so the "
            "agreement and localisation figures compare maps that miss the evidence: they cannot tell whether "
            "distillation kept the teacher's focus.")


#: The per-cell figures the by-method summary averages: agreement with the teacher, and localisation.
_SUMMARISED = {"spearman": ("agreement", "spearman"), "iou": ("agreement", "top20_iou"),
               "epg": ("localisation", "energy_pointing_game"), "pg": ("localisation", "pointing_game")}


def _collect(into: dict[str, list[float]], metrics: dict[str, Any], loc: dict[str, Any]) -> None:
    """Append one cell's mean figures (where present) to a method's lists."""
    sources = {"agreement": metrics.get("agreement", {}), "localisation": loc}
    for name, (where, key) in _SUMMARISED.items():
        value = (sources[where].get(key) or {}).get("mean")
        into.setdefault(name, [])
        if value is not None and np.isfinite(value):
            into[name].append(float(value))


def _mean_sd(values: list[float]) -> str:
    """``0.42 ± 0.05 (6)``: mean ± sample sd over cells (teachers and seeds), and how many."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} (1)"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} ({len(values)})"
