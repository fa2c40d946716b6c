"""Markdown leaderboards from the run store, rendered with Jinja2 templates.

The store is the single source of truth: ``medkd-bench leaderboard`` can
rebuild every page at any time without training anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from medkd_bench.evaluate import stats
from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.files.paths import path_inside
from medkd_bench.registry import Registry
from medkd_bench.report.board_owner import claim_leaderboard_dir, pages_not_in_store
from medkd_bench.report.clinical_tables import clinical_rows, confusion_tables
from medkd_bench.report.contents import CONTENTS_MARK, with_contents
from medkd_bench.report.curve_plot import CurvesFigure, curves_plot
from medkd_bench.report.experiment import command_line, experiment_toml
from medkd_bench.report.explanation_tables import explanation_tables, latest_explanations
from medkd_bench.report.export import export_rows, to_csv
from medkd_bench.report.format import (
    deployed_latency_text,
    latency_text,
    method_label,
    num,
    pct,
    timing_machines,
)
from medkd_bench.report.glance import at_a_glance
from medkd_bench.report.method_summary import method_summary, weak_teachers
from medkd_bench.report.pages_by_settings import DEFAULT_KEY, Page, latest_records, pages_for
from medkd_bench.report.plots import ParetoFigure, pareto_plot
from medkd_bench.report.provenance import checksums_text, reproduce_entries, versions_text
from medkd_bench.report.recipes import recipes
from medkd_bench.report.row_stats import RowStats, gain_text, mcnemar_text
from medkd_bench.report.trust import (
    NO_FLAGS,
    RowFlags,
    Trust,
    legends,
    teacher_design_text,
    training_images_text,
)
from medkd_bench.report.tuned_vs_default import counterpart, glance_line, section
from medkd_bench.report.tuning import tuning_rows
from medkd_bench.run.cells import describe_model
from medkd_bench.run.store import CellRecord, ExplanationRecord, Store, TrialRecord
from medkd_bench.specs import BASE_METHODS


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("medkd_bench.report", "templates"),
        keep_trailing_newline=True,
        trim_blocks=False,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


Key = tuple[str, str, str]  # (method, teacher, student): one leaderboard row, all seeds


def _groups(done: Iterable[CellRecord]) -> dict[Key, list[CellRecord]]:
    """Finished records per leaderboard row, ordered by seed."""
    out: dict[Key, list[CellRecord]] = {}
    for r in sorted(done, key=lambda r: r.seed):
        out.setdefault((r.method, r.teacher, r.student), []).append(r)
    return out


@dataclass
class _Row:
    records: list[CellRecord]
    scores: dict[str, dict[str, Any]]

    @property
    def rec(self) -> CellRecord:
        """The lowest seed's cell: source of the cost columns, which do not depend on training."""
        return self.records[0]

    def fields(self, gain: dict[str, Any] | None = None, panel: str = "-", weak: bool = False,
               flags: RowFlags = NO_FLAGS) -> dict[str, Any]:
        """The row's table cells, with the symbols of its ``flags`` (:mod:`.trust`)."""
        m = self.rec.metrics
        train_s = [r.timings["train_s"] for r in self.records if "train_s" in r.timings]
        return {
            "teacher": self.rec.teacher + (" ‡" if weak else "") + flags.teacher_mark,
            "student": self.rec.student + flags.student_mark,
            "method": self.rec.method,
            "acc": stats.format_ci(self.scores["accuracy"]),
            "f1": stats.format_ci(self.scores["macro_f1"]),
            "seeds": stats.format_sd(self.scores["accuracy"]),
            "params": num(m.get("params_m"), ".2f"),
            "gmacs": num(m.get("gmacs"), ".3f"),
            "latency": latency_text(m, "latency"),
            "deployed_latency": deployed_latency_text(m),
            "onnx_latency": latency_text(m, "onnx_latency"),
            "throughput": num(m.get("throughput"), ".0f"),
            "best_epoch": " / ".join(str(r.metrics.get("best_epoch", "-")) for r in self.records),
            "train_s": num(sum(train_s) / len(train_s) if train_s else None, ".0f"),
            "gain": gain_text(gain) + flags.gain_mark,
            "p": mcnemar_text(gain),
            "panel": panel,
        }


@dataclass
class _Board:
    """One dataset's rows, scored once and shared by its page and the index."""

    latest: dict[tuple[str, str, str, int], CellRecord]
    groups: dict[Key, list[CellRecord]]
    scores: dict[Key, dict[str, dict[str, Any]]]
    gains: dict[Key, dict[str, Any] | None]
    #: ROC AUC, ECE, sensitivity and specificity per row (None without per-image predictions).
    clinical: dict[Key, dict[str, Any] | None]

    @property
    def done(self) -> list[CellRecord]:
        return [r for rs in self.groups.values() for r in rs]

    def accuracy(self, key: Key) -> float:
        return self.scores[key]["accuracy"]["mean"]

    def best(self, method: str | None) -> Key | None:
        """The most accurate row of ``method`` (``None``: of any distillation method)."""
        keys = (k for k in self.groups if (k[0] == method if method else k[0] not in BASE_METHODS))
        return max(keys, key=self.accuracy, default=None)

    def weak_teachers(self) -> dict[tuple[str, str], bool]:
        return weak_teachers(list(self.groups), self.accuracy)


def _board(registry: Registry, dataset: str, records: list[CellRecord], row_stats: RowStats) -> _Board:
    spec = registry.datasets.get(dataset)
    latest = latest_records(records)
    groups = _groups(r for r in latest.values() if r.status == "done")
    num_classes = len(spec.classes) if spec else 0
    scores = {}
    for key, recs in groups.items():
        k = num_classes or len(recs[0].metrics.get("per_class_f1", {})) or 1
        scores[key] = row_stats.scores(recs, k)
    gains = {key: row_stats.gain(recs, groups.get(("label-only", "", key[2])))
             for key, recs in groups.items() if key[0] not in BASE_METHODS}
    clinical = {key: row_stats.clinical(recs, num_classes or len(recs[0].metrics.get("per_class_f1", {})) or 1)
                for key, recs in groups.items()}
    return _Board(latest, groups, scores, gains, clinical)


def _seed_rows(board: _Board, row_stats: RowStats) -> list[dict[str, Any]]:
    """One row per stored cell (each seed): the provenance table."""
    rows = []
    for key in sorted(board.groups, key=lambda k: (k[0] != "teacher", k[0] != "label-only", k[1], k[2])):
        for r in board.groups[key]:
            single = row_stats.scores([r], len(r.metrics.get("per_class_f1", {})) or 1)
            gain = (row_stats.gain([r], board.groups.get(("label-only", "", r.student)))
                    if r.method not in BASE_METHODS else None)
            mc = (gain or {}).get("mcnemar") or [None]
            rows.append({
                "name": r.teacher if r.method == "teacher" else r.student,
                "method": method_label(r), "seed": r.seed, "hash": r.hash,
                "acc": stats.format_ci(single["accuracy"]), "f1": stats.format_ci(single["macro_f1"]),
                "gain": gain_text(gain),
                "mcnemar": (f"{mc[0]['b']} / {mc[0]['c']}, p = {stats.format_p(mc[0]['p_exact'])} "
                            f"(mid-p {stats.format_p(mc[0]['p_mid'])})") if mc[0] else "-",
            })
    return rows


def render_dataset(registry: Registry, dataset: str, records: list[CellRecord],
                   explanations: list[ExplanationRecord], row_stats: RowStats | None = None,
                   board: _Board | None = None, page: Page | None = None,
                   other_pages: Sequence[Page] = (), plot: ParetoFigure | None = None,
                   curves: CurvesFigure | None = None, trials: Sequence[TrialRecord] = (),
                   versus: dict[str, Any] | None = None) -> str:
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
    weak = board.weak_teachers()
    trust = Trust(groups, board.gains, row_stats)
    student_flags = [trust.flags(key) for key in student_keys]
    for key, flags in zip(student_keys, student_flags, strict=True):
        links = [link for r in groups[key][:1] for link in panel_links.get(r.hash, [])]  # the lowest seed's
        students.append(_Row(groups[key], board.scores[key]).fields(gain=board.gains.get(key),
                                                                    panel=" ".join(links) or "-",
                                                                    weak=weak.get((key[1], key[2]), False),
                                                                    flags=flags))
    teacher_flags = [RowFlags(teacher_unconverged=not trust.model_converged(k)) for k in teacher_keys]
    teachers = [_Row(groups[k], board.scores[k]).fields(flags=f)
                for k, f in zip(teacher_keys, teacher_flags, strict=True)]
    classes = list(spec.classes) if spec else []
    # What each student is (its budget, for searched students): the table's rows are names only.
    student_notes = [{"name": n, "description": getattr(registry.students.get(n), "description", "")
                      or "(student plugin not installed)"}
                     for n in sorted({r.student for r in done if r.method != "teacher"})]
    row_keys = teacher_keys + sorted((k for k in groups if k[0] != "teacher"), key=lambda k: (k[2], k[0]))
    per_class = [
        {"name": k[1] if k[0] == "teacher" else k[2],
         "method": method_label(groups[k][0]),
         "scores": [pct(float(np.mean([r.metrics["per_class_f1"].get(c, np.nan) for r in groups[k]])))
                    for c in classes]}
        for k in row_keys
    ]
    failed = [{"label": _cell_label(r), "error": (r.error or "").replace("|", "/")}
              for r in board.latest.values() if r.status == "failed"]
    kept = [{"label": _cell_label(r), "why": _retrain_text(r)}
            for r in board.latest.values() if r.status == "done" and r.retrain_status]
    any_cfg = records[0].config if records else {}
    n_test = next((r.metrics.get("n_test") for r in done), 0)
    seeds = sorted({r.seed for r in done})
    reproduce = reproduce_entries(registry, dataset, done, explanations, row_stats.resamples,
                                  page.settings if page is not None and page.recorded else None)
    glance = at_a_glance(dict(zip(teacher_keys, teachers, strict=True)), dict(zip(student_keys, students, strict=True)),
                         board.accuracy, board.gains, len(failed)) + [line for line in [glance_line(versus)] if line]
    return with_contents(_env().get_template("dataset.md.j2").render(
        contents=CONTENTS_MARK,
        glance=glance,
        dataset=spec or _FallbackDataset(dataset),
        img_size=any_cfg.get("dataset", {}).get("img_size", "-"),
        n_test=n_test,
        chance=1.0 / len(spec.classes) if spec else 0.0,
        methods=methods_used(registry, done),
        method_summary=method_summary(list(groups), board.accuracy, board.gains, weak),
        any_weak=any(weak.get((k[1], k[2])) for k in groups if k[0] not in BASE_METHODS),
        machine="; ".join(sorted({r.metrics.get("machine", "unrecorded") for r in done})) or "-",
        timing_machine=timing_machines(done),
        # Latency as deployed: CUDA runs only, so CPU pages keep their columns.
        deployed=any("latency_deployed_method" in r.metrics for r in done),
        teachers=teachers,
        students=students,
        trust=trust.section(n_test),
        **legends(teacher_flags, student_flags),
        # On a page with several seeds, distilled rows with only one pair of seeds get the images-only CI.
        one_seed_gains=len(seeds) > 1 and any((g := board.gains.get(k)) and g.get("ci")
                                               and g.get("ci_basis") != stats.SEEDS_AND_IMAGES for k in groups),
        student_notes=student_notes,
        per_class=per_class,
        clinical=clinical_rows(row_keys, groups, board.clinical, len(classes)),
        confusion=confusion_tables(row_keys, groups, classes),
        failed=failed,
        kept=kept,
        explanations=explanation_tables(done, explanations),
        resamples=row_stats.resamples,
        seeds=", ".join(map(str, seeds)) or "-",
        teacher_design=teacher_design_text(done),
        training_images=training_images_text(done),
        recipes=recipes(done),
        multi_seed=len(seeds) > 1,
        versions=versions_text(done),
        checksums=checksums_text(done),
        deterministic=("-" if not done else "yes" if all(r.metrics.get("deterministic") for r in done)
                       else "no" if not any(r.metrics.get("deterministic") for r in done) else "mixed"),
        settings_text=page.settings_text if page else "defaults",
        other_pages=[{"file": p.file, "settings": p.settings_text} for p in other_pages],
        commands=[command_line(e) for e in reproduce],
        experiments=[experiment_toml(e) for e in reproduce],
        seed_rows=_seed_rows(board, row_stats),
        plot=plot,
        curves=curves,
        tuning=tuning_rows(page.settings, records, trials) if page is not None else [],
        tune_trials=page.settings.get("tune_trials") if page is not None else None,
        versus=versus,
    ))


def methods_used(registry: Registry, done: list[CellRecord]) -> list[dict[str, str]]:
    """The distillation methods on a page, with the options and revision they ran with (from the cells' configs)."""
    seen: dict[str, dict[str, str]] = {}
    for r in sorted(done, key=lambda r: r.method):
        cfg = r.config.get("distill")
        if not cfg or r.method in seen:
            continue
        spec = registry.methods.get(r.method)
        options = ", ".join(f"{k} = {v}" for k, v in cfg.get("options", {}).items()) or "no options"
        seen[r.method] = {"name": r.method, "revision": str(cfg.get("revision", "-")), "options": options,
                          "citation": spec.citation if spec else "(method plugin not installed)"}
    return list(seen.values())


def _cell_label(r: CellRecord) -> str:
    return f"{describe_model(r.method, r.teacher, r.student)}, seed {r.seed}"


def _retrain_text(r: CellRecord) -> str:
    """Why a done cell's row shows its earlier result: its retraining is under way, or did not finish."""
    if r.retrain_status == "running":
        return "being trained again now"
    return f"retraining it did not finish ({(r.retrain_error or 'no reason recorded').replace('|', '/')})"


@dataclass
class _FallbackDataset:
    """For store rows whose dataset plugin is no longer installed."""

    name: str
    description: str = "(dataset plugin not installed)"
    citation: str = "-"
    classes: tuple[str, ...] = ()


def render_all(registry: Registry, store: Store, out_dir: Path, resamples: int = stats.RESAMPLES) -> list[Path]:
    """Write ``<dataset>.md`` per dataset in the store, ``results.csv`` (one row per cell) and ``README.md``.

    ``resamples``: bootstrap resamples per confidence interval (``--bootstrap``). A folder whose
    pages another work dir renders is refused (:mod:`medkd_bench.report.board_owner`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    claim_leaderboard_dir(out_dir, store.path.parent)
    row_stats = RowStats(registry, resamples)
    records = store.cells()
    explanations = store.explanations()
    runs = store.run_settings()
    trials = store.trials()
    datasets = sorted({r.dataset for r in records})
    written: list[Path] = []
    index_rows = []
    pages = [page for d in datasets
             for page in pages_for(d, [r for r in records if r.dataset == d], runs, registry.datasets.get(d))]
    boards = {page.file: _board(registry, page.dataset, page.records, row_stats) for page in pages}
    for page in pages:
        d, recs = page.dataset, page.records
        path = path_inside(out_dir, page.file)
        hashes = {r.hash for r in recs}
        board = boards[page.file]
        others = [p for p in pages if p.dataset == d and p is not page]
        plot = pareto_plot(registry, board.groups, board.scores, out_dir, page)
        curves = curves_plot(registry, board.groups, out_dir, page)
        twin = counterpart(page, pages)
        versus = section(page, twin, board, boards[twin.file] if twin else None, row_stats.gain)
        _write(path, render_dataset(registry, d, recs, [e for e in explanations if e.cell_hash in hashes],
                                    row_stats, board, page, others, plot, curves, trials, versus))
        written.append(path)
        best_t, best_kd, base = board.best("teacher"), board.best(None), board.best("label-only")
        gain = board.gains.get(best_kd) if best_kd else None
        gain_text = "" if gain is None else f", {100 * gain['mean']:+.1f} pp{'†' if gain.get('significant') else ''}"
        index_rows.append({
            "name": d if page.key == DEFAULT_KEY else f"{d} ({page.settings_text})",
            "file": path.name,
            "best_teacher": f"{best_t[1]} ({pct(board.accuracy(best_t))})" if best_t else "-",
            "best_kd": (f"{best_kd[1]} -> {best_kd[2]}, {best_kd[0]} ({pct(board.accuracy(best_kd))}{gain_text})"
                        if best_kd else "-"),
            "baseline": f"{base[2]} ({pct(board.accuracy(base))})" if base else "-",
            "done": len(board.done),
            "failed": sum(1 for r in board.latest.values() if r.status == "failed"),
        })
    results = out_dir / RESULTS_CSV  # the same rows as `medkd-bench export --format csv`
    _write(results, to_csv(export_rows(registry, records, explanations, runs, row_stats)))
    written.append(results)
    index = out_dir / "README.md"
    stale = pages_not_in_store(out_dir, {p.name for p in written}, store.path)
    _write(index, _env().get_template("index.md.j2").render(rows=index_rows, store=store.path.name, stale=stale))
    written.append(index)
    return written


#: The tidy export every run and ``leaderboard`` writes next to the pages.
RESULTS_CSV = "results.csv"


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text)
