"""Students as deployed: ONNX export, the check against PyTorch on the test split, ONNX Runtime latency."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from medkd_bench.deploy import onnx as deploy
from medkd_bench.run.store import Store
from tests.helpers import QUICK, assert_one_line_error, table_row


def _tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


@pytest.mark.slow
def test_the_check_accepts_the_exported_model_and_refuses_another(tmp_path):
    model = _tiny(0)
    path = deploy.export_onnx(model, 16, tmp_path / "tiny.onnx")
    images = torch.randn(20, 3, 16, 16)
    same = deploy.check_onnx(path, model, images)
    assert same.ok and same.n == 20 and same.max_abs_diff <= same.tolerance
    other = deploy.check_onnx(path, _tiny(1), images)  # the file no longer matches the model
    assert not other.ok and "ONNX Runtime differs from PyTorch" in other.problem()
    timed = deploy.onnx_latency(path, 16, runs=5, min_seconds=0.0, warmup=1)
    assert timed["onnx_latency_runs"] == 5 and timed["onnx_latency_ms"] > 0


def test_missing_onnx_packages_are_a_one_line_error_before_any_work(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(deploy, "PACKAGES", (*deploy.PACKAGES, "medkd_no_such_package"))
    result = run_cli([*QUICK, "--onnx", "--work-dir", str(tmp_path / "work")])
    assert_one_line_error(result, "medkd_no_such_package", "medkd-bench[onnx]")
    assert not (tmp_path / "work").exists()


def test_run_onnx_exports_checks_and_times_every_student(run_cli, quick_run):
    work, boards = quick_run / "work", quick_run / "boards"
    result = run_cli([*QUICK, "--onnx", "--work-dir", str(work), "--leaderboard-dir", str(boards)])
    assert result.exit_code == 0, result.err
    assert "0 trained, 3 already done" in result.out
    with Store(work / "runs.sqlite", readonly=True) as store:
        cells = {c.method: c for c in store.cells()}
    assert "onnx_latency_ms" not in cells["teacher"].metrics  # students only: what a clinic deploys
    for method in ("label-only", "kd"):
        m = cells[method].metrics
        assert m["onnx_latency_ms"] > 0 and m["onnx_max_abs_logit_diff"] <= m["onnx_tolerance"]
        assert (work / m["onnx_file"]).is_file() and len(m["onnx_sha256"]) == 64
    page = (boards / "synthetic-cxr.md").read_text()
    assert "ONNX Runtime latency (ms)" in page
    kd_row = table_row(page, "## Students", ["ofa-595", "visformer-s", "kd"])
    assert kd_row is not None
    assert f"{cells['kd'].metrics['onnx_latency_ms']:.2f} (IQR " in kd_row
    with open(boards / "results.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["kd"]["onnx_latency_ms"]) == cells["kd"].metrics["onnx_latency_ms"]
    again = run_cli([*QUICK, "--onnx", "--work-dir", str(work), "--leaderboard-dir", str(boards)])
    assert again.exit_code == 0
    with Store(work / "runs.sqlite", readonly=True) as store:  # exported once: a rerun keeps the figures
        assert store.get(cells["kd"].hash).metrics["onnx_sha256"] == cells["kd"].metrics["onnx_sha256"]
