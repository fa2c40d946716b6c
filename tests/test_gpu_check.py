"""benchmarks/gpu_check.py (issue 20's GPU check) in its CPU smoke mode.

The GPU itself is not here: these runs check that every step's code path that needs no CUDA
works (matrices as child processes, store reading, the rerun, CPU latency, bench_gpu's
harness section), that the budget skips rather than overruns, and that every target gets a
PASS or MISS line in the log and an entry in the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
TARGETS = {"full", "rerun", "latency", "util", "warmup", "harness ofa-595"}


def run_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, str, dict]:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True,
                          text=True, timeout=1500, cwd=out.parent)
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    figures = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").exists() else {}
    return proc, log, figures


def summary_lines(log: str, figures: dict) -> None:
    """Every target once in the summary, as PASS or MISS with its label."""
    assert set(figures["targets"]) == TARGETS
    summary = log.split("Summary against issue 20's targets", 1)[1]
    for target in figures["targets"].values():
        assert target["verdict"] in ("PASS", "MISS")
        assert f"  {target['verdict']}  {target['label']}: " in summary


def test_cpu_smoke_runs_every_step(tmp_path):
    out = tmp_path / "log"
    # About a minute on 2 quiet cores; the large budget keeps a busy machine from skipping steps.
    proc, log, figures = run_check(out, "--device", "cpu", "--budget-s", "1400")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary_lines(log, figures)
    steps = figures["steps"]
    for name in ("quick", "full", "rerun", "latency", "harness", "util", "m224"):
        assert "wall_s" in steps[name] and "skipped" not in steps[name] and "error" not in steps[name], name
    for name in ("quick", "full", "m224"):
        assert steps[name]["rc"] == 0 and steps[name]["done"] == steps[name]["cells"] > 0, name
        assert (out / name / "work" / "runs.sqlite").is_file()
    assert steps["rerun"]["of"] == "full" and steps["rerun"]["cells_recomputed"] == []
    assert figures["latency"]["cpu_threads"] >= 1 and figures["latency"]["cpu"]
    assert figures["harness"]["ofa-595"]["block_ratio"] > 0
    assert figures["targets"]["util"]["value"] == "skipped: needs CUDA"
    assert "cpu smoke: not a GPU figure" in figures["targets"]["full"]["note"]
    assert "torch: " in log and "python: " in log  # the environment header


def test_budget_skips_instead_of_overrunning(tmp_path):
    out = tmp_path / "log"
    proc, log, figures = run_check(out, "--device", "cpu", "--budget-s", "1")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary_lines(log, figures)
    assert all(step.get("skipped") == "budget" for step in figures["steps"].values())
    assert figures["targets"]["full"]["value"] == "skipped: budget"
    assert not (out / "quick").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "log"), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["gpu_check: --device cuda: CUDA is not available on this machine"]
