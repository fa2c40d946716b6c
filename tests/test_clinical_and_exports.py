"""Clinical scores (ROC AUC, ECE, sensitivity, specificity), tidy exports and accuracy-vs-cost plots."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import multilabel_confusion_matrix, roc_auc_score

from medkd_bench.evaluate.clinical import (
    clinical_summary,
    ece_weighted,
    resample_counts,
    roc_auc_point,
    roc_auc_weighted,
    sensitivity_specificity_weighted,
)
from medkd_bench.report.export import COLUMNS, EXPLAINER_FIGURES
from medkd_bench.report.plots import pareto_front
from medkd_bench.run.store import Store
from tests.helpers import QUICK, assert_one_line_error


def _probs(n: int, k: int, seed: int = 0, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, (np.round(p, decimals) if decimals is not None else p)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many tied scores
def test_roc_auc_equals_scikit_learn_on_the_sample_and_on_resamples(k, decimals):
    y, p = _probs(60, k, decimals=decimals)
    expected = (roc_auc_score(y, p[:, 1]) if k == 2 else
                np.mean([roc_auc_score(y == c, p[:, c]) for c in range(k)]))
    assert roc_auc_weighted(y, p, np.ones((1, 60)))[0] == pytest.approx(expected, abs=1e-12)
    assert roc_auc_point(y, p) == pytest.approx(expected, abs=1e-12)
    if decimals is None:  # rows summing to 1: scikit-learn's own multi-class call agrees
        sk = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr", average="macro")
        assert roc_auc_point(y, p) == pytest.approx(sk, abs=1e-12)
    assert roc_auc_point(y[y != 0], p[y != 0]) is None  # a class missing: undefined, not a number
    # A bootstrap resample is its image counts: scikit-learn's sample_weight gives the same AUC.
    counts = resample_counts(np.random.default_rng(k).integers(0, 60, size=(4, 60)), 60)
    for row, w in zip(roc_auc_weighted(y, p, counts), counts, strict=True):
        assert row == pytest.approx(np.mean([roc_auc_score(y == c, p[:, c], sample_weight=w) for c in range(k)]),
                                    abs=1e-12)
    assert np.isnan(roc_auc_weighted(y, p, np.where(y == 0, 0.0, 1.0)[None]))[0]  # no image of class 0


def test_ece_is_the_binned_confidence_gap_by_hand():
    y, p = _probs(50, 3, seed=1)
    conf, correct = p.max(1), p.argmax(1) == y
    bins = np.linspace(0, 1, 16)
    expected = 0.0
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        inside = (conf >= lo) & (conf < hi) if hi < 1 else (conf >= lo)
        if inside.any():
            expected += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert ece_weighted(y, p, np.ones((1, 50)))[0] == pytest.approx(expected, abs=1e-12)
    assert ece_weighted(y, np.eye(3)[y], np.ones((1, 50)))[0] == 0.0  # confident and right
    twice = np.r_[y, y], np.r_[p, p]  # counts of 2 are the images repeated
    assert ece_weighted(y, p, np.full((1, 50), 2.0))[0] == pytest.approx(ece_weighted(*twice, np.ones((1, 100)))[0])


def test_sensitivity_and_specificity_equal_the_one_vs_rest_confusion_matrices():
    rng = np.random.default_rng(2)
    y, pred = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
    w = resample_counts(rng.integers(0, 80, size=(1, 80)), 80)
    sens, spec = sensitivity_specificity_weighted(y, pred, w, 4)
    matrices = multilabel_confusion_matrix(y, pred, labels=range(4), sample_weight=w[0])
    for c, ((tn, fp), (fn, tp)) in enumerate(matrices):
        assert sens[0, c] == pytest.approx(tp / (tp + fn)) and spec[0, c] == pytest.approx(tn / (tn + fp))


def test_clinical_summary_over_seeds_has_cis_around_the_means():
    y, p0 = _probs(90, 3, seed=3)
    _, p1 = _probs(90, 3, seed=4)
    probs = np.stack([p0, p1])
    out = clinical_summary(y, probs.argmax(-1), probs, 3, resamples=200)
    for name in ("roc_auc", "ece", "mean_sensitivity", "mean_specificity"):
        s = out[name]
        assert s["n_seeds"] == 2 and s["sd"] is not None and s["ci"][0] <= s["mean"] <= s["ci"][1], name
    assert out["roc_auc"]["mean"] == pytest.approx(np.mean([roc_auc_point(y, p0), roc_auc_point(y, p1)]))
    assert out["mean_sensitivity"]["mean"] == pytest.approx(np.mean([(pr.argmax(1) == y).mean() for pr in probs]))
    without = clinical_summary(y, probs.argmax(-1), None, 3, resamples=50)
    assert without["roc_auc"] is None and without["ece"] is None and len(without["sensitivity"]) == 3


def test_pareto_front_by_hand():
    costs, scores = [1.0, 2.0, 2.0, 3.0, 0.5, 4.0], [0.6, 0.7, 0.65, 0.7, 0.5, 0.9]
    assert pareto_front(costs, scores) == [4, 0, 1, 5]  # 2: same cost, worse; 3: costlier, not better


# ---- end to end: the quick matrix's store, its export, results.csv and the plot ---------------------------


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_results_csv_and_plot_match_the_store(run_cli, quick_run):
    work, boards = quick_run / "work", quick_run / "boards"
    result = run_cli(["export", "--format", "csv", "--work-dir", str(work)])
    assert result.exit_code == 0, result.err
    rows = _rows(result.out)
    header = list(rows[0])
    explainers = sorted({c.split(".")[0] for c in header if "." in c})
    assert header == [*COLUMNS, *(f"{e}.{f}" for e in explainers for f in EXPLAINER_FIGURES)]
    assert explainers == ["eigen-cam", "grad-cam", "grad-cam-plus-plus", "score-cam"]
    with Store(work / "runs.sqlite", readonly=True) as store:
        cells = {c.hash: c for c in store.cells()}
    assert {r["config_hash"] for r in rows} == set(cells) and len(rows) == 3
    by_method = {r["method"]: r for r in rows}
    for r in rows:
        m = cells[r["config_hash"]].metrics
        assert float(r["accuracy"]) == m["accuracy"] and float(r["macro_f1"]) == m["macro_f1"]
        assert float(r["accuracy_ci_low"]) <= float(r["accuracy"]) <= float(r["accuracy_ci_high"])
        probs = np.asarray(m["test_probabilities"])
        assert probs.shape == (len(m["test_labels"]), 3) and (probs.argmax(1) == m["test_predictions"]).all()
        assert float(r["roc_auc"]) == pytest.approx(roc_auc_point(np.asarray(m["test_labels"]), probs))
        assert float(r["latency_ms"]) == m["latency_ms"] and float(r["params_m"]) == m["params_m"]
        assert set(json.loads(r["sensitivity_by_class"])) == {"COVID-19", "Non-COVID", "Normal"}
        timings = cells[r["config_hash"]].timings
        assert float(r["train_cpu_s"]) == timings["train_cpu_s"] > 0 and timings["total_cpu_s"] >= timings["train_cpu_s"]
    kd, base = by_method["kd"], by_method["label-only"]
    assert float(kd["kd_gain"]) == pytest.approx(float(kd["accuracy"]) - float(base["accuracy"]))
    assert 0 <= float(kd["mcnemar_p"]) <= 1 and base["kd_gain"] == "" and by_method["teacher"]["student"] == ""
    assert kd["score-cam.spearman_vs_teacher"] != "" and by_method["teacher"]["score-cam.spearman_vs_teacher"] == ""

    # Every run writes results.csv beside the pages: the same rows as the export.
    assert _rows((boards / "results.csv").read_text()) == rows
    as_json = run_cli(["export", "--format", "json", "--out", str(quick_run / "cells.json"), "--work-dir", str(work)])
    assert as_json.exit_code == 0, as_json.err
    records = json.loads((quick_run / "cells.json").read_text())
    assert [r["config_hash"] for r in records] == [r["config_hash"] for r in rows]
    assert records[0]["teacher"] == "visformer-s" and isinstance(records[0]["sensitivity_by_class"], dict)

    page = (boards / "synthetic-cxr.md").read_text()
    assert "](plots/synthetic-cxr.pareto.png)" in page.split("## Teachers")[0]
    with Image.open(boards / "plots" / "synthetic-cxr.pareto.png") as img:
        assert img.format == "PNG" and img.width > 600
    assert "## Clinical scores" in page and "Confusion matrices" in page
    assert "| visformer-s | teacher | 0." in page.split("## Clinical scores")[1]  # an AUC, not "-"


def test_an_unknown_export_format_is_one_line(run_cli, tmp_path):
    result = run_cli(["export", "--format", "xlsx", "--work-dir", str(tmp_path)])
    assert_one_line_error(result, "--format")


def test_probabilities_missing_from_an_older_store_are_recomputed_and_checked(run_cli, quick_run):
    work = quick_run / "work"
    dirs = ["--work-dir", str(work), "--leaderboard-dir", str(quick_run / "boards")]
    with Store(work / "runs.sqlite", readonly=True) as store:
        before = {c.method: c for c in store.cells()}
    db = sqlite3.connect(work / "runs.sqlite")
    for method, cell in before.items():  # as stored before probabilities were recorded
        metrics = {k: v for k, v in cell.metrics.items() if k != "test_probabilities"}
        if method == "label-only":  # and one whose checkpoint no longer gives its stored predictions
            metrics["test_predictions"] = [(p + 1) % 3 for p in metrics["test_predictions"]]
        db.execute("UPDATE cells SET metrics = ? WHERE hash = ?", (json.dumps(metrics), cell.hash))
    db.commit()
    db.close()
    result = run_cli([*QUICK, *dirs])
    assert result.exit_code == 0, result.err
    assert "0 trained, 3 already done" in result.out
    assert "(labels only)" in result.err and "predicts 9 test image(s) differently" in result.err
    with Store(work / "runs.sqlite", readonly=True) as store:
        after = {c.method: c for c in store.cells()}
    for method in ("teacher", "kd"):
        assert np.allclose(after[method].metrics["test_probabilities"], before[method].metrics["test_probabilities"],
                           atol=1e-6)
    assert "test_probabilities" not in after["label-only"].metrics


def test_every_export_column_is_documented():
    """In docs/results.md's column table, which the README's Exports section links to."""
    from pathlib import Path

    section = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text().split("## Export columns")[1]
    section = section.split("\n## ")[0]
    for column in COLUMNS:
        base = column.removesuffix("_ci_low").removesuffix("_ci_high")
        assert f"`{base}`" in section, column
    for figure in EXPLAINER_FIGURES:
        assert f"`{figure}`" in section, figure
