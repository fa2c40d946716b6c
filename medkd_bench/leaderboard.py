"""Markdown leaderboards from the run store, rendered with Jinja2 templates.

The store is the single source of truth: ``medkd-bench leaderboard`` can
rebuild every page at any time without training anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .agreement import format_summary
from .plugins import Registry
from .store import CellRecord, ExplanationRecord, Store


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("medkd_bench", "templates"),
        keep_trailing_newline=True,
        trim_blocks=False,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


@dataclass
class _Row:
    rec: CellRecord

    def fields(self, gain: str = "-", panel: str = "-") -> dict[str, Any]:
        m = self.rec.metrics
        return {
            "teacher": self.rec.teacher,
            "student": self.rec.student,
            "method": self.rec.method,
            "acc": _pct(m.get("accuracy")),
            "f1": _pct(m.get("macro_f1")),
            "params": _num(m.get("params_m"), ".2f"),
            "gmacs": _num(m.get("gmacs"), ".3f"),
            "latency": _num(m.get("latency_ms"), ".2f"),
            "throughput": _num(m.get("throughput"), ".0f"),
            "best_epoch": m.get("best_epoch", "-"),
            "train_s": _num(self.rec.timings.get("train_s"), ".0f"),
            "gain": gain,
            "panel": panel,
        }


def kd_gain(kd: CellRecord, baseline: CellRecord | None) -> float | None:
    if baseline is None or baseline.status != "done":
        return None
    return kd.metrics["accuracy"] - baseline.metrics["accuracy"]


def _latest(records: Iterable[CellRecord]) -> dict[tuple[str, str, str], CellRecord]:
    """One record per (method, teacher, student): the newest finished one wins."""
    out: dict[tuple[str, str, str], CellRecord] = {}
    for r in sorted(records, key=lambda r: r.finished_at or 0.0):
        key = (r.method, r.teacher, r.student)
        if r.status == "done" or key not in out or out[key].status != "done":
            out[key] = r
    return out


def _method_label(r: CellRecord) -> str:
    return f"kd from {r.teacher}" if r.method == "kd" else r.method


def _explanation_tables(done: list[CellRecord], explanations: list[ExplanationRecord]) -> list[dict[str, Any]]:
    """One entry per explainer: agreement rows (KD pairs) and per-model rows."""
    by_cell: dict[tuple[str, str], ExplanationRecord] = {}
    for e in sorted(explanations, key=lambda e: e.finished_at or 0.0):
        if e.status == "done":
            by_cell[(e.cell_hash, e.explainer)] = e
    out = []
    for explainer in sorted({k[1] for k in by_cell}):
        rows, agreement_rows, panels = [], [], []
        n_images = n_sanity = 0
        mask = None
        order = sorted(done, key=lambda r: (r.method != "teacher", r.method != "label-only", r.teacher, r.student))
        for r in order:
            e = by_cell.get((r.hash, explainer))
            if e is None:
                continue
            m = e.metrics
            n_images = max(n_images, m.get("n_images", 0))
            n_sanity = max(n_sanity, m.get("n_sanity", 0))
            loc = m.get("localisation", {})
            mask = loc.get("mask", mask)
            rows.append({
                "name": r.teacher if r.method == "teacher" else r.student,
                "method": _method_label(r),
                "epg": format_summary(loc.get("energy_pointing_game")),
                "pg": format_summary(loc.get("pointing_game")),
                "chance": format_summary(loc.get("chance")),
                "road": format_summary(m.get("road"), 3),
                "sanity": format_summary(m.get("sanity", {}).get("spearman")),
            })
            if r.method == "kd":
                kd, base = m.get("agreement", {}), m.get("label_only_agreement", {})
                agreement_rows.append({
                    "teacher": r.teacher, "student": r.student,
                    "sp_kd": format_summary(kd.get("spearman")), "sp_base": format_summary(base.get("spearman")),
                    "iou_kd": format_summary(kd.get("top20_iou")), "iou_base": format_summary(base.get("top20_iou")),
                })
                if e.artifacts.get("panel"):
                    panels.append({"title": f"{r.teacher} -> {r.student}", "path": e.artifacts["panel"]})
        out.append({"name": explainer, "rows": rows, "agreement": agreement_rows, "panels": panels,
                    "n_images": n_images, "n_sanity": n_sanity, "mask": mask})
    return out


def render_dataset(registry: Registry, dataset: str, records: list[CellRecord],
                   explanations: list[ExplanationRecord]) -> str:
    spec = registry.datasets.get(dataset)
    latest = _latest(records)
    done = [r for r in latest.values() if r.status == "done"]
    teachers = sorted((r for r in done if r.method == "teacher"), key=lambda r: -r.metrics["accuracy"])
    baselines = {r.student: r for r in done if r.method == "label-only"}
    panel_links: dict[str, list[str]] = {}
    for e in sorted(explanations, key=lambda e: e.explainer):
        if e.status == "done" and e.artifacts.get("panel"):
            panel_links.setdefault(e.cell_hash, []).append(f"[{e.explainer}]({e.artifacts['panel']})")
    students: list[dict[str, Any]] = []
    for r in sorted((r for r in done if r.method != "teacher"),
                    key=lambda r: (r.student, r.method != "label-only", -r.metrics["accuracy"])):
        gain = kd_gain(r, baselines.get(r.student)) if r.method == "kd" else None
        students.append(_Row(r).fields(gain="-" if gain is None else f"{100 * gain:+.1f}",
                                       panel=" ".join(panel_links.get(r.hash, [])) or "-"))
    # What each student is (its budget, for searched students): the table's rows are names only.
    student_notes = [{"name": n, "description": getattr(registry.students.get(n), "description", "")
                      or "(student plugin not installed)"}
                     for n in sorted({r.student for r in done if r.method != "teacher"})]
    per_class = [
        {"name": r.teacher if r.method == "teacher" else r.student,
         "method": _method_label(r),
         "scores": [_pct(r.metrics["per_class_f1"].get(c)) for c in (spec.classes if spec else [])]}
        for r in teachers + sorted((r for r in done if r.method != "teacher"), key=lambda r: (r.student, r.method))
    ]
    failed = [{"label": f"{r.method} {r.teacher} {r.student}".strip(), "error": (r.error or "").replace("|", "/")}
              for r in latest.values() if r.status == "failed"]
    any_cfg = records[0].config if records else {}
    kd_cfg = next((r.config.get("kd") for r in records if r.config.get("kd")), None)
    kd_text = (f"T = {kd_cfg['temperature']}, alpha = {kd_cfg['alpha']}" if kd_cfg else "no KD cell yet")
    n_test = next((r.metrics.get("n_test") for r in done), 0)
    return _env().get_template("dataset.md.j2").render(
        dataset=spec or _FallbackDataset(dataset),
        img_size=any_cfg.get("dataset", {}).get("img_size", "-"),
        n_test=n_test,
        chance=1.0 / len(spec.classes) if spec else 0.0,
        kd_text=kd_text,
        machine="; ".join(sorted({r.metrics.get("machine", "unrecorded") for r in done})) or "-",
        teachers=[_Row(r).fields() for r in teachers],
        students=students,
        student_notes=student_notes,
        per_class=per_class,
        failed=failed,
        explanations=_explanation_tables(done, explanations),
    )


@dataclass
class _FallbackDataset:
    """For store rows whose dataset plugin is no longer installed."""

    name: str
    description: str = "(dataset plugin not installed)"
    citation: str = "-"
    classes: tuple[str, ...] = ()


def render_all(registry: Registry, store: Store, out_dir: Path) -> list[Path]:
    """Write ``<dataset>.md`` per dataset in the store and ``README.md`` as the index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = store.cells()
    explanations = store.explanations()
    datasets = sorted({r.dataset for r in records})
    written: list[Path] = []
    index_rows = []
    for d in datasets:
        recs = [r for r in records if r.dataset == d]
        path = out_dir / f"{d}.md"
        hashes = {r.hash for r in recs}
        _write(path, render_dataset(registry, d, recs, [e for e in explanations if e.cell_hash in hashes]))
        written.append(path)
        latest = _latest(recs)
        done = [r for r in latest.values() if r.status == "done"]
        best_t = max((r for r in done if r.method == "teacher"), key=lambda r: r.metrics["accuracy"], default=None)
        best_kd = max((r for r in done if r.method == "kd"), key=lambda r: r.metrics["accuracy"], default=None)
        base = max((r for r in done if r.method == "label-only"), key=lambda r: r.metrics["accuracy"], default=None)
        baselines = {r.student: r for r in done if r.method == "label-only"}
        gain = kd_gain(best_kd, baselines.get(best_kd.student)) if best_kd else None
        index_rows.append({
            "name": d,
            "file": path.name,
            "best_teacher": f"{best_t.teacher} ({_pct(best_t.metrics['accuracy'])})" if best_t else "-",
            "best_kd": (f"{best_kd.teacher} -> {best_kd.student} ({_pct(best_kd.metrics['accuracy'])}"
                        f"{'' if gain is None else f', {100 * gain:+.1f} pp'})") if best_kd else "-",
            "baseline": f"{base.student} ({_pct(base.metrics['accuracy'])})" if base else "-",
            "done": len(done),
            "failed": sum(1 for r in latest.values() if r.status == "failed"),
        })
    index = out_dir / "README.md"
    _write(index, _env().get_template("index.md.j2").render(rows=index_rows, store=store.path.name))
    written.append(index)
    return written


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
