"""benchmarks/gpu_check.py (issue 20's GPU check) in its CPU smoke mode, and its GPU mode's plan.

The GPU itself is not here: these runs check that every step's code path that needs no CUDA
works (matrices as child processes, store reading, the rerun, CPU latency, bench_gpu's
harness section), that the budget skips rather than overruns, and that every target gets a
PASS or MISS line in the log and an entry in the JSON; and, without running them, that the
GPU mode's budget arithmetic and matrix commands are sound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import run_main

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module (benchmarks/ scripts import each other by plain name)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import gpu_check

    return gpu_check


def test_gpu_budget_keeps_the_later_steps_least(gpu_check, monkeypatch):
    plan = gpu_check.Plan(gpu_check.GPU, 440)
    monkeypatch.setattr(gpu_check.bg, "elapsed", lambda: 0.0)
    assert plan.allowance("quick") == 110  # its cap: 440 s less the later steps' 178 s leaves more
    monkeypatch.setattr(gpu_check.bg, "elapsed", lambda: 300.0)
    assert plan.allowance("harness") == 440 - 300 - 20 - 40  # util's and the 224 px matrix's least kept
    monkeypatch.setattr(gpu_check.bg, "elapsed", lambda: 401.0)
    assert plan.allowance("m224") is None  # 39 s left, it needs 40: skipped, not overrun


def test_gpu_matrices_are_valid_run_commands(gpu_check, tmp_path):
    """The GPU mode's matrices, planned on this machine: options a GPU run would reject fail here too."""
    gpu = gpu_check.GPU
    for name, extra in (("quick", gpu.quick), ("full", gpu.full), ("m224", (*gpu.m224, "--img-size", "224"))):
        args = ["run", *extra, "--device", "cpu", "--dry-run", "--work-dir", str(tmp_path / name)]
        assert run_main(args) == 0, name
