"""Shared fixtures: a CLI runner and settings for tiny, fast, real runs.

Tests train the real built-in models (timm, ofa) on a tiny slice of the
embedded synthetic data at 32 px for one epoch: small enough for CI on two
cores, real enough that every component (fvcore, grad-cam, SQLite, Jinja2,
matplotlib) runs for real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from medkd_bench.cli import main

TINY_DATA = [
    "--dataset-option", "synthetic-cxr.n_train=24",
    "--dataset-option", "synthetic-cxr.n_val=9",
    "--dataset-option", "synthetic-cxr.n_test=9",
    "--img-size", "32",
    "--epochs", "1",
    "--latency-runs", "3",
]


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    def run(args: Sequence[str]) -> CliResult:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    return ["--work-dir", str(tmp_path / "work"), "--leaderboard-dir", str(tmp_path / "boards")]
