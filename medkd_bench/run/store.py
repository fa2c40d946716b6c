"""The run store: one SQLite row per matrix cell, committed the moment it finishes.

SQLite (stdlib) in WAL mode survives a killed process with every committed
cell intact; the cell's config hash is its key, so a rerun knows what is done.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkd_bench.errors import MedkdError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    hash        TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    teacher     TEXT NOT NULL,
    student     TEXT NOT NULL,
    method      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL,
    config      TEXT NOT NULL,
    metrics     TEXT,
    timings     TEXT,
    artifacts   TEXT,
    error       TEXT,
    started_at  REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS cells_by_dataset ON cells(dataset, method);
CREATE TABLE IF NOT EXISTS explanations (
    cell_hash   TEXT NOT NULL,
    explainer   TEXT NOT NULL,
    n_images    INTEGER NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL,
    metrics     TEXT,
    artifacts   TEXT,
    error       TEXT,
    finished_at REAL,
    PRIMARY KEY (cell_hash, explainer, n_images, seed)
);
"""


@dataclass
class CellRecord:
    hash: str
    dataset: str
    teacher: str
    student: str
    method: str
    seed: int
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    timings: dict[str, float]
    artifacts: dict[str, str]
    error: str | None
    started_at: float | None
    finished_at: float | None


@dataclass
class ExplanationRecord:
    cell_hash: str
    explainer: str
    n_images: int
    seed: int
    status: str
    metrics: dict[str, Any]
    artifacts: dict[str, str]
    error: str | None
    finished_at: float | None


def _loads(text: str | None) -> dict:
    return json.loads(text) if text else {}


class Store:
    """A thin, explicit wrapper over one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise MedkdError(f"run store {self.path}: cannot open ({exc})") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    def get(self, cell_hash: str) -> CellRecord | None:
        row = self._db.execute("SELECT * FROM cells WHERE hash = ?", (cell_hash,)).fetchone()
        return self._record(row) if row else None

    def is_done(self, cell_hash: str) -> bool:
        rec = self.get(cell_hash)
        return rec is not None and rec.status == "done"

    def start(self, cell_hash: str, dataset: str, teacher: str, student: str, method: str, seed: int,
              config: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO cells (hash, dataset, teacher, student, method, seed, status, config, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?) "
                "ON CONFLICT(hash) DO UPDATE SET status='running', error=NULL, started_at=excluded.started_at",
                (cell_hash, dataset, teacher, student, method, seed, json.dumps(config, sort_keys=True), time.time()),
            )

    def finish(self, cell_hash: str, metrics: dict[str, Any], timings: dict[str, float],
               artifacts: dict[str, str]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE cells SET status='done', metrics=?, timings=?, artifacts=?, error=NULL, finished_at=? "
                "WHERE hash=?",
                (json.dumps(metrics), json.dumps(timings), json.dumps(artifacts), time.time(), cell_hash),
            )

    def update_metrics(self, cell_hash: str, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into a stored cell's metrics (in one transaction, so concurrent writers keep theirs)."""
        with self._tx() as db:
            row = db.execute("SELECT metrics FROM cells WHERE hash=?", (cell_hash,)).fetchone()
            if row is None:
                raise KeyError(cell_hash)
            db.execute("UPDATE cells SET metrics=? WHERE hash=?", (json.dumps({**_loads(row[0]), **updates}),
                                                                   cell_hash))

    def fail(self, cell_hash: str, error: str, timings: dict[str, float] | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE cells SET status='failed', error=?, timings=?, finished_at=? WHERE hash=?",
                (error, json.dumps(timings or {}), time.time(), cell_hash),
            )

    # ---- explanations: keyed by the cell plus the explainer and its sample, so a
    # rerun with another explainer or sample size explains without retraining.
    def explanation(self, cell_hash: str, explainer: str, n_images: int, seed: int) -> ExplanationRecord | None:
        row = self._db.execute(
            "SELECT * FROM explanations WHERE cell_hash=? AND explainer=? AND n_images=? AND seed=?",
            (cell_hash, explainer, n_images, seed),
        ).fetchone()
        return self._explanation(row) if row else None

    def save_explanation(self, cell_hash: str, explainer: str, n_images: int, seed: int, status: str,
                         metrics: dict[str, Any] | None = None, artifacts: dict[str, str] | None = None,
                         error: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cell_hash, explainer, n_images, seed, status, json.dumps(metrics or {}),
                 json.dumps(artifacts or {}), error, time.time()),
            )

    def explanations(self, cell_hashes: list[str] | None = None) -> list[ExplanationRecord]:
        rows = self._db.execute("SELECT * FROM explanations ORDER BY finished_at").fetchall()
        recs = [self._explanation(r) for r in rows]
        return recs if cell_hashes is None else [r for r in recs if r.cell_hash in set(cell_hashes)]

    @staticmethod
    def _explanation(row: tuple) -> ExplanationRecord:
        h, explainer, n, seed, status, metrics, artifacts, error, finished = row
        return ExplanationRecord(h, explainer, int(n), int(seed), status, _loads(metrics), _loads(artifacts),
                                 error, finished)

    def cells(self, dataset: str | None = None, status: str | None = None) -> list[CellRecord]:
        query, args = "SELECT * FROM cells WHERE 1=1", []
        if dataset is not None:
            query += " AND dataset = ?"
            args.append(dataset)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        query += " ORDER BY dataset, method, teacher, student, seed"
        return [self._record(r) for r in self._db.execute(query, args).fetchall()]

    @staticmethod
    def _record(row: tuple) -> CellRecord:
        (h, dataset, teacher, student, method, seed, status, config, metrics, timings, artifacts, error,
         started, finished) = row
        return CellRecord(h, dataset, teacher, student, method, int(seed), status, _loads(config),
                          _loads(metrics), _loads(timings), _loads(artifacts), error, started, finished)
