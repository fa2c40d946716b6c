"""Settings and helpers the test modules share (fixtures live in ``conftest.py``).

Tests train the real built-in models (timm, ofa) on a tiny slice of the
embedded synthetic data at 32 px for one epoch: small enough for CI on two
cores, real enough that every component (fvcore, grad-cam, SQLite, Jinja2,
matplotlib) runs for real.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from medkd_bench.cli import main
from medkd_bench.run.store import Store

#: Test plugins as real files: pass them with ``--plugin`` or to ``registry_of``.
PLUGIN_FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"

TINY_DATA = [
    "--dataset-option", "synthetic-cxr.n_train=24",
    "--dataset-option", "synthetic-cxr.n_val=9",
    "--dataset-option", "synthetic-cxr.n_test=9",
    "--dataset-option", "synthetic-histo.n_train=20",
    "--dataset-option", "synthetic-histo.n_val=10",
    "--dataset-option", "synthetic-histo.n_test=10",
    # Teachers on three times the students' images, given: a quick run would otherwise use the datasets'
    # quick options (teachers on the students' images), and tests of the teacher split run quick runs.
    "--dataset-option", "synthetic-cxr.teacher_train_factor=3",
    "--dataset-option", "synthetic-histo.teacher_train_factor=3",
    "--img-size", "32",
    "--epochs", "1",
    "--latency-runs", "3",
    # Exactly 3 timed runs (the default goes on for 1 s): at 32 px nobody reads the latency, and timing
    # for a second per architecture per run was the largest fixed cost of the suite's matrices.
    "--latency-seconds", "0",
    # One attempt: a timing beside the other test process would wait and time again, up to twice a model.
    "--latency-attempts", "1",
    # Two explained images, one of them also through the random-weight sanity check: Score-CAM costs one
    # forward pass per target channel per image (512 for VGG19), the suite's largest explanation cost.
    "--explain-images", "2",
    "--sanity-images", "1",
    # One process: tests/test_pool_executor.py covers worker pools (each costs seconds of start-up).
    "--jobs", "1",
]

QUICK = ["run", "--matrix", "quick", "--teachers", "visformer-s", *TINY_DATA]

#: KD from Visformer-S into OFA-595 on both embedded datasets (6 cells), explained by Grad-CAM only.
TWO_DATASETS = ["run", "--methods", "kd", "--teachers", "visformer-s", "--students", "ofa-595", "--explainers", "grad-cam",
                *TINY_DATA]


def plugin_fixture(name: str) -> str:
    """The path of ``tests/plugin_fixtures/<name>.py``, as ``--plugin`` takes it."""
    path = PLUGIN_FIXTURES / f"{name}.py"
    assert path.is_file(), path
    return str(path)


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str


def assert_one_line_error(result: CliResult | subprocess.CompletedProcess, *fragments: str) -> str:
    """The contract for bad input (README, "one line naming the culprit"): assert it, return the line.

    Exit code 2; exactly one non-empty line on stderr and it starts with ``error:``; no
    ``Traceback`` on stdout or stderr; every fragment (an option, a file, a plugin, a row) in
    that line. Takes a :class:`CliResult` or a finished :func:`subprocess.run` (text mode).
    """
    if isinstance(result, subprocess.CompletedProcess):
        code, out, err = result.returncode, result.stdout or "", result.stderr or ""
    else:
        code, out, err = result.exit_code, result.out, result.err
    shown = f"exit code {code}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    assert code == 2, shown
    assert "Traceback" not in out and "Traceback" not in err, shown
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    line = lines[0]
    assert line.startswith("error:"), shown
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def run_main(args: Sequence[str]) -> int:
    """``medkd-bench ARGS`` in this process; its exit code."""
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _timed(key: str) -> bool:
    """Whether a metric times the machine, not the model (it differs from run to run)."""
    return key.startswith("latency") or key in ("throughput", "timed_on")


def stored_rows(work: Path, explainers: Sequence[str] | None = None) -> tuple[dict, dict]:
    """The store's cell rows (by hash) and explanation rows (by cell and explainer), less what is timed or dated.

    ``explainers`` keeps only those explainers' rows (a run explained with fewer than the reference).
    """
    with Store(work / "runs.sqlite") as store:
        cells = {c.hash: {**asdict(c), "metrics": {k: v for k, v in c.metrics.items() if not _timed(k)},
                          "timings": None, "started_at": None, "finished_at": None} for c in store.cells()}
        explained = {(e.cell_hash, e.explainer): {**asdict(e), "finished_at": None,
                                                  "metrics": {k: v for k, v in e.metrics.items() if k != "seconds"}}
                     for e in store.explanations() if explainers is None or e.explainer in explainers}
    return cells, explained


def assert_same_rows(reference: Path, other: Path, cells: int, explainers: Sequence[str] | None = None) -> None:
    """Two work dirs hold the same ``cells`` cell rows and explanation rows, timings and dates aside.

    Every executor (local, pool, Ray) must write what the one-thread local run writes: the
    same config hashes, per-epoch history, test predictions, metrics and explanation maps.
    """
    (rows, explained), (other_rows, other_explained) = stored_rows(reference, explainers), stored_rows(other, explainers)
    assert len(rows) == cells and explained
    assert rows.keys() == other_rows.keys()  # the same config hashes
    for h, row in rows.items():
        assert other_rows[h] == row, h
    assert other_explained == explained


#: Marks a leaderboard puts beside a model's name: not converged, teacher weaker than the student.
NAME_FLAGS = " §‡"


def table_row(page: str, section: str, first_cells: Sequence[str]) -> str | None:
    """The first row of ``section``'s tables whose leading cells are ``first_cells``, whatever flags mark them.

    Rows carry flags that depend on the trained numbers (‡ when a one-epoch teacher happens
    to score below its student), so tests find a row by its names, not by its exact text.
    """
    body = page.split(section, 1)[1] if section in page else ""
    for line in body.splitlines():
        cells = [c.strip(NAME_FLAGS) for c in line.split("|")[1:1 + len(first_cells)]]
        if cells == list(first_cells):
            return line
    return None


class DropoutNet(nn.Module):
    """A small real CNN with batch norm (buffers a step changes) and dropout (a step draws random numbers)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.conv(x))).mean((2, 3))))


def embedded_dataset_config(registry, name: str = "synthetic-cxr", img_size: int = 64) -> dict:
    """A stored cell's ``dataset`` config for an embedded dataset at its default options (for hand-made stores)."""
    spec = registry.datasets[name]
    return {"name": name, "revision": spec.revision, "img_size": img_size, "options": dict(spec.options), "root": None}
