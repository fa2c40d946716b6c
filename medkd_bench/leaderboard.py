"""Markdown leaderboards from the run store, rendered with Jinja2 templates.

The store is the single source of truth: ``medkd-bench leaderboard`` can
rebuild every page at any time without training anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from . import stats
from .agreement import format_summary
from .plugins import Registry
from .provenance import checksums_text, reproduce_commands, versions_text
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


Key = tuple[str, str, str]  # (method, teacher, student): one leaderboard row, all seeds


def _latest(records: Iterable[CellRecord]) -> dict[tuple[str, str, str, int], CellRecord]:
    """One record per (method, teacher, student, seed): the newest finished one wins."""
    out: dict[tuple[str, str, str, int], CellRecord] = {}
    for r in sorted(records, key=lambda r: r.finished_at or 0.0):
        key = (r.method, r.teacher, r.student, r.seed)
        if r.status == "done" or key not in out or out[key].status != "done":
            out[key] = r
    return out


def _groups(done: Iterable[CellRecord]) -> dict[Key, list[CellRecord]]:
    """Finished records per leaderboard row, ordered by seed."""
    out: dict[Key, list[CellRecord]] = {}
    for r in sorted(done, key=lambda r: r.seed):
        out.setdefault((r.method, r.teacher, r.student), []).append(r)
    return out


class RowStats:
    """Per-image statistics for leaderboard rows: CIs, seed spread, paired KD-gain tests.

    Works from each cell's stored ``test_predictions`` and ``test_labels``. Cells
    stored before labels were recorded get them back from the dataset plugin
    (same dataset revision, same options), accepted only if they reproduce the
    cell's stored confusion matrix exactly; otherwise the row shows no CI.
    """

    def __init__(self, registry: Registry, resamples: int = stats.RESAMPLES, seed: int = 0):
        self.registry = registry
        self.resamples = resamples
        self.seed = seed
        self._recovered: dict[str, list[int] | None] = {}

    def labels(self, rec: CellRecord) -> np.ndarray | None:
        preds = rec.metrics.get("test_predictions")
        if not preds:
            return None
        labels = rec.metrics.get("test_labels")
        if labels is None:
            labels = self._recover(rec)
        if labels is None or len(labels) != len(preds):
            return None
        return np.asarray(labels, dtype=np.int64)

    def _recover(self, rec: CellRecord) -> list[int] | None:
        cfg = rec.config.get("dataset", {})
        spec = self.registry.datasets.get(cfg.get("name", ""))
        if spec is None or "options" not in cfg or cfg.get("revision") != spec.revision:
            return None
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in self._recovered:
            try:  # best effort: a dataset that needs a missing local copy simply yields no CI
                options = {k: v for k, v in cfg["options"].items() if k in spec.options}
                split = spec.load("test", int(cfg["img_size"]), Path(cfg["root"]) if cfg.get("root") else None,
                                  {**spec.options, **options})
                self._recovered[key] = split.labels.tolist()
            except Exception:
                self._recovered[key] = None
        labels = self._recovered[key]
        confusion = rec.metrics.get("confusion")
        if labels is None or confusion is None or len(labels) != len(rec.metrics["test_predictions"]):
            return None
        k = len(confusion)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (np.asarray(labels), np.asarray(rec.metrics["test_predictions"])), 1)
        return labels if counts.tolist() == confusion else None

    def _per_image(self, records: list[CellRecord]) -> tuple[np.ndarray, np.ndarray] | None:
        """(labels, predictions as seeds x images) when every record has them for the same test split."""
        labels = [self.labels(r) for r in records]
        if not labels or any(y is None for y in labels):
            return None
        first = labels[0]
        assert first is not None
        if any(not np.array_equal(first, y) for y in labels[1:]):
            return None
        return first, np.asarray([r.metrics["test_predictions"] for r in records], dtype=np.int64)

    def scores(self, records: list[CellRecord], num_classes: int) -> dict[str, dict[str, Any]]:
        """Accuracy and macro-F1: mean over seeds, 95% CI over test images, sd across seeds."""
        per_image = self._per_image(records)
        if per_image is not None:
            return stats.classification_summary(*per_image, num_classes, self.seed, self.resamples)
        out = {}
        for metric in ("accuracy", "macro_f1"):
            v = np.asarray([r.metrics[metric] for r in records], dtype=float)
            out[metric] = {"mean": float(v.mean()), "ci": None, "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                           "n_seeds": len(v)}
        return out

    def gain(self, kd: list[CellRecord], baseline: list[CellRecord] | None) -> dict[str, Any] | None:
        """KD minus label-only accuracy over the seeds both have, paired by seed and by image."""
        if not baseline:
            return None
        base_by_seed = {r.seed: r for r in baseline}
        pairs = [(r, base_by_seed[r.seed]) for r in kd if r.seed in base_by_seed]
        if not pairs:
            return None
        a, b = self._per_image([p[0] for p in pairs]), self._per_image([p[1] for p in pairs])
        if a is not None and b is not None and np.array_equal(a[0], b[0]):
            out = stats.paired_difference(a[0], a[1], b[1], self.seed, self.resamples)
        else:
            d = np.asarray([x.metrics["accuracy"] - y.metrics["accuracy"] for x, y in pairs])
            out = {"mean": float(d.mean()), "ci": None, "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
                   "n_seeds": len(d), "significant": False, "mcnemar": None}
        out["seeds"] = [p[0].seed for p in pairs]
        return out


def _gain_text(gain: dict[str, Any] | None) -> str:
    if gain is None:
        return "-"
    text = f"{100 * gain['mean']:+.1f}"
    if gain.get("ci"):
        lo, hi = gain["ci"]
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return text + ("†" if gain.get("significant") else "")


def _mcnemar_text(gain: dict[str, Any] | None) -> str:
    """Exact McNemar p, one per seed (``/``-separated) when there are several."""
    if not gain or not gain.get("mcnemar"):
        return "-"
    return " / ".join(stats.format_p(m["p_exact"]) for m in gain["mcnemar"])


@dataclass
class _Row:
    records: list[CellRecord]
    scores: dict[str, dict[str, Any]]

    @property
    def rec(self) -> CellRecord:
        """The lowest seed's cell: source of the cost columns, which do not depend on training."""
        return self.records[0]

    def fields(self, gain: dict[str, Any] | None = None, panel: str = "-") -> dict[str, Any]:
        m = self.rec.metrics
        train_s = [r.timings["train_s"] for r in self.records if "train_s" in r.timings]
        return {
            "teacher": self.rec.teacher,
            "student": self.rec.student,
            "method": self.rec.method,
            "acc": stats.format_ci(self.scores["accuracy"]),
            "f1": stats.format_ci(self.scores["macro_f1"]),
            "seeds": stats.format_sd(self.scores["accuracy"]),
            "params": _num(m.get("params_m"), ".2f"),
            "gmacs": _num(m.get("gmacs"), ".3f"),
            "latency": _num(m.get("latency_ms"), ".2f"),
            "throughput": _num(m.get("throughput"), ".0f"),
            "best_epoch": " / ".join(str(r.metrics.get("best_epoch", "-")) for r in self.records),
            "train_s": _num(sum(train_s) / len(train_s) if train_s else None, ".0f"),
            "gain": _gain_text(gain),
            "p": _mcnemar_text(gain),
            "panel": panel,
        }


def _method_label(r: CellRecord, with_seed: bool = False) -> str:
    label = f"kd from {r.teacher}" if r.method == "kd" else r.method
    return f"{label}, seed {r.seed}" if with_seed else label


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


def _explanation_tables(done: list[CellRecord], explanations: list[ExplanationRecord]) -> list[dict[str, Any]]:
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
                "method": _method_label(r, with_seed),
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


@dataclass
class _Board:
    """One dataset's rows, scored once and shared by its page and the index."""

    latest: dict[tuple[str, str, str, int], CellRecord]
    groups: dict[Key, list[CellRecord]]
    scores: dict[Key, dict[str, dict[str, Any]]]
    gains: dict[Key, dict[str, Any] | None]

    @property
    def done(self) -> list[CellRecord]:
        return [r for rs in self.groups.values() for r in rs]

    def accuracy(self, key: Key) -> float:
        return self.scores[key]["accuracy"]["mean"]

    def best(self, method: str) -> Key | None:
        return max((k for k in self.groups if k[0] == method), key=self.accuracy, default=None)


def _board(registry: Registry, dataset: str, records: list[CellRecord], row_stats: RowStats) -> _Board:
    spec = registry.datasets.get(dataset)
    latest = _latest(records)
    groups = _groups(r for r in latest.values() if r.status == "done")
    num_classes = len(spec.classes) if spec else 0
    scores = {}
    for key, recs in groups.items():
        k = num_classes or len(recs[0].metrics.get("per_class_f1", {})) or 1
        scores[key] = row_stats.scores(recs, k)
    gains = {key: row_stats.gain(recs, groups.get(("label-only", "", key[2])))
             for key, recs in groups.items() if key[0] == "kd"}
    return _Board(latest, groups, scores, gains)


def _seed_rows(board: _Board, row_stats: RowStats) -> list[dict[str, Any]]:
    """One row per stored cell (each seed): the provenance table."""
    rows = []
    for key in sorted(board.groups, key=lambda k: (k[0] != "teacher", k[0] != "label-only", k[1], k[2])):
        for r in board.groups[key]:
            single = row_stats.scores([r], len(r.metrics.get("per_class_f1", {})) or 1)
            gain = (row_stats.gain([r], board.groups.get(("label-only", "", r.student)))
                    if r.method == "kd" else None)
            mc = (gain or {}).get("mcnemar") or [None]
            rows.append({
                "name": r.teacher if r.method == "teacher" else r.student,
                "method": _method_label(r), "seed": r.seed, "hash": r.hash,
                "acc": stats.format_ci(single["accuracy"]), "f1": stats.format_ci(single["macro_f1"]),
                "gain": _gain_text(gain),
                "mcnemar": (f"{mc[0]['b']} / {mc[0]['c']}, p = {stats.format_p(mc[0]['p_exact'])} "
                            f"(mid-p {stats.format_p(mc[0]['p_mid'])})") if mc[0] else "-",
            })
    return rows


def render_dataset(registry: Registry, dataset: str, records: list[CellRecord],
                   explanations: list[ExplanationRecord], row_stats: RowStats | None = None,
                   board: _Board | None = None) -> str:
    row_stats = row_stats or RowStats(registry)
    spec = registry.datasets.get(dataset)
    board = board or _board(registry, dataset, records, row_stats)
    done = board.done
    groups = board.groups
    teacher_keys = sorted((k for k in groups if k[0] == "teacher"), key=lambda k: -board.accuracy(k))
    panel_links: dict[str, list[str]] = {}
    for (cell_hash, explainer), e in sorted(latest_explanations(explanations).items(), key=lambda kv: kv[0][1]):
        if e.artifacts.get("panel"):
            panel_links.setdefault(cell_hash, []).append(f"[{explainer}]({e.artifacts['panel']})")
    students: list[dict[str, Any]] = []
    student_keys = sorted((k for k in groups if k[0] != "teacher"),
                          key=lambda k: (k[2], k[0] != "label-only", -board.accuracy(k)))
    for key in student_keys:
        links = [link for r in groups[key] for link in panel_links.get(r.hash, [])]
        students.append(_Row(groups[key], board.scores[key]).fields(gain=board.gains.get(key),
                                                                    panel=" ".join(links) or "-"))
    classes = list(spec.classes) if spec else []
    # What each student is (its budget, for searched students): the table's rows are names only.
    student_notes = [{"name": n, "description": getattr(registry.students.get(n), "description", "")
                      or "(student plugin not installed)"}
                     for n in sorted({r.student for r in done if r.method != "teacher"})]
    per_class = [
        {"name": k[1] if k[0] == "teacher" else k[2],
         "method": _method_label(groups[k][0]),
         "scores": [_pct(float(np.mean([r.metrics["per_class_f1"].get(c, np.nan) for r in groups[k]])))
                    for c in classes]}
        for k in teacher_keys + sorted((k for k in groups if k[0] != "teacher"), key=lambda k: (k[2], k[0]))
    ]
    failed = [{"label": f"{r.method} {r.teacher} {r.student} seed {r.seed}".replace("  ", " "),
               "error": (r.error or "").replace("|", "/")}
              for r in board.latest.values() if r.status == "failed"]
    any_cfg = records[0].config if records else {}
    kd_cfg = next((r.config.get("kd") for r in records if r.config.get("kd")), None)
    kd_text = (f"T = {kd_cfg['temperature']}, alpha = {kd_cfg['alpha']}" if kd_cfg else "no KD cell yet")
    n_test = next((r.metrics.get("n_test") for r in done), 0)
    seeds = sorted({r.seed for r in done})
    return _env().get_template("dataset.md.j2").render(
        dataset=spec or _FallbackDataset(dataset),
        img_size=any_cfg.get("dataset", {}).get("img_size", "-"),
        n_test=n_test,
        chance=1.0 / len(spec.classes) if spec else 0.0,
        kd_text=kd_text,
        machine="; ".join(sorted({r.metrics.get("machine", "unrecorded") for r in done})) or "-",
        # Timed where the cost figures were taken: the driver of a worker pool, not the worker that trained.
        timing_machine="; ".join(sorted({r.metrics.get("timed_on", r.metrics.get("machine", "unrecorded"))
                                         for r in done})) or "-",
        teachers=[_Row(groups[k], board.scores[k]).fields() for k in teacher_keys],
        students=students,
        student_notes=student_notes,
        per_class=per_class,
        failed=failed,
        explanations=_explanation_tables(done, explanations),
        resamples=row_stats.resamples,
        seeds=", ".join(map(str, seeds)) or "-",
        multi_seed=len(seeds) > 1,
        versions=versions_text(done),
        checksums=checksums_text(done),
        deterministic=("yes" if all(r.metrics.get("deterministic") for r in done)
                       else "no" if not any(r.metrics.get("deterministic") for r in done) else "mixed"),
        commands=reproduce_commands(registry, dataset, done, explanations, row_stats.resamples),
        seed_rows=_seed_rows(board, row_stats),
    )


@dataclass
class _FallbackDataset:
    """For store rows whose dataset plugin is no longer installed."""

    name: str
    description: str = "(dataset plugin not installed)"
    citation: str = "-"
    classes: tuple[str, ...] = ()


def render_all(registry: Registry, store: Store, out_dir: Path, resamples: int = stats.RESAMPLES) -> list[Path]:
    """Write ``<dataset>.md`` per dataset in the store and ``README.md`` as the index.

    ``resamples``: bootstrap resamples per confidence interval (``--bootstrap``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    row_stats = RowStats(registry, resamples)
    records = store.cells()
    explanations = store.explanations()
    datasets = sorted({r.dataset for r in records})
    written: list[Path] = []
    index_rows = []
    for d in datasets:
        recs = [r for r in records if r.dataset == d]
        path = out_dir / f"{d}.md"
        hashes = {r.hash for r in recs}
        board = _board(registry, d, recs, row_stats)
        _write(path, render_dataset(registry, d, recs, [e for e in explanations if e.cell_hash in hashes],
                                    row_stats, board))
        written.append(path)
        best_t, best_kd, base = board.best("teacher"), board.best("kd"), board.best("label-only")
        gain = board.gains.get(best_kd) if best_kd else None
        gain_text = "" if gain is None else f", {100 * gain['mean']:+.1f} pp{'†' if gain.get('significant') else ''}"
        index_rows.append({
            "name": d,
            "file": path.name,
            "best_teacher": f"{best_t[1]} ({_pct(board.accuracy(best_t))})" if best_t else "-",
            "best_kd": (f"{best_kd[1]} -> {best_kd[2]} ({_pct(board.accuracy(best_kd))}{gain_text})"
                        if best_kd else "-"),
            "baseline": f"{base[2]} ({_pct(board.accuracy(base))})" if base else "-",
            "done": len(board.done),
            "failed": sum(1 for r in board.latest.values() if r.status == "failed"),
        })
    index = out_dir / "README.md"
    _write(index, _env().get_template("index.md.j2").render(rows=index_rows, store=store.path.name))
    written.append(index)
    return written


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
