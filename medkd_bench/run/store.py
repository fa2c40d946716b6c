"""The run store: one SQLite row per matrix cell, committed the moment it finishes.

SQLite (stdlib) in WAL mode survives a killed process with every committed
cell intact; the cell's config hash is its key, so a rerun knows what is done.

A store is trusted only as far as it can be checked: an empty (0-byte) or
damaged file is a one-line :class:`StoreError` naming it, never a fresh
start, and every later SQLite or disk error is one too, so the run stops
cleanly with its finished cells kept. A cell's status only moves forward: a
late failure or an interruption never overwrites ``done``. Training a done
cell again (its checkpoint was found missing or damaged) is an *attempt*
recorded beside the result (``retrain_status``): the cell stays done with its
previous numbers until the new ones are stored, so a Ctrl-C or a failure
mid-retrain costs the page nothing.

Rows are checked when read: a row that does not parse (its JSON, or a column
of the wrong type, say after a hand edit or a bad disk sector SQLite's page
checks did not catch) is one warning naming the store and the cell, and is
left out, so every other cell still renders and exports, and ``run`` trains
that cell again (``start`` resets such a row, never keeps it as done).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from medkd_bench.errors import one_line
from medkd_bench.messages import warn
from medkd_bench.run.records import (  # noqa: F401  (the records and errors are the store's API too)
    ADDED_COLUMNS,
    CELL_STATUSES,
    EXPLANATION_COLUMNS,
    EXPLANATION_STATUSES,
    SCHEMA,
    CellRecord,
    ExplanationRecord,
    StoreError,
    StoreRowError,
    TrialRecord,
    _cell_name,
    _cell_record,
    _loads,
    _parsed,
    _readable,
)

#: Why a cell (or a retrain attempt) left running by a killed run failed.
INTERRUPTED_BY_KILL = "interrupted (the run that started it ended without recording it)"
R = TypeVar("R")


def guarded(method: Callable[..., R]) -> Callable[..., R]:
    """Turn SQLite and disk errors inside a store method into a one-line :class:`StoreError`."""

    @wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> R:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"run store {self.path}: {type(exc).__name__}: {exc}") from exc

    return call


class Store:
    """A thin, explicit wrapper over one SQLite file.

    ``readonly`` opens an existing store without writing to it (``medkd-bench
    leaderboard`` and ``explain``); otherwise a missing store is created.
    """

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self._unreadable: set[str] = set()  # rows already named in a warning
        exists = self.path.exists()
        if exists and self.path.is_file() and self.path.stat().st_size == 0:
            raise StoreError(f"run store {self.path} is empty (0 bytes): not a medkd-bench store; restore it or "
                             "remove it to start afresh")
        if readonly and not exists:
            raise StoreError(f"no run store at {self.path}: run `medkd-bench run` first or pass --work-dir")
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, timeout=30.0)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=30.0)
            if exists:
                self._check()
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
                self._add_missing_columns()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"run store {self.path}: cannot open: {type(exc).__name__}: {exc}") from exc
        self._db.row_factory = sqlite3.Row

    def _check(self) -> None:
        """An existing file must be an intact SQLite database holding the cells table."""
        verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise StoreError(f"run store {self.path} is damaged ({verdict}); restore it or remove it to start afresh")
        if "cells" not in self._tables():
            raise StoreError(f"run store {self.path} is not a medkd-bench store (no cells table)")

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _add_missing_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

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

    def _skip(self, error: StoreRowError) -> None:
        """Name an unreadable row once per store: it is read again by every later step of a run."""
        if str(error) not in self._unreadable:
            self._unreadable.add(str(error))
            warn(str(error))

    @guarded
    def get(self, cell_hash: str) -> CellRecord | None:
        """The cell's record; None if there is none or it does not parse (then warned, and ``run`` retrains it)."""
        row = self._db.execute("SELECT * FROM cells WHERE hash = ?", (cell_hash,)).fetchone()
        if row is None:
            return None
        try:
            return self._record(row)
        except StoreRowError as exc:
            self._skip(exc)
            return None

    def is_done(self, cell_hash: str) -> bool:
        rec = self.get(cell_hash)
        return rec is not None and rec.status == "done"

    @guarded
    def start(self, cell_hash: str, dataset: str, teacher: str, student: str, method: str, seed: int,
              config: dict[str, Any]) -> None:
        """Mark a cell running; a done cell keeps its status and result, and its retrain attempt is marked running.

        A done cell is trained again only when its checkpoint is missing or
        damaged: its stored numbers were computed from the intact checkpoint and
        stay valid, so they are shown until the new ones replace them.
        """
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT * FROM cells WHERE hash=?", (cell_hash,)).fetchone()
            if row is not None and row["status"] == "done" and _readable(row):
                db.execute("UPDATE cells SET retrain_status='running', retrain_error=NULL, retrain_started_at=? "
                           "WHERE hash=?", (now, cell_hash))
                return
            # New, failed, left running, or a row that does not parse: every column written afresh.
            db.execute(
                "INSERT INTO cells (hash, dataset, teacher, student, method, seed, status, config, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?) "
                "ON CONFLICT(hash) DO UPDATE SET dataset=excluded.dataset, teacher=excluded.teacher, "
                "student=excluded.student, method=excluded.method, seed=excluded.seed, status='running', "
                "config=excluded.config, metrics=NULL, timings=NULL, artifacts=NULL, error=NULL, "
                "started_at=excluded.started_at, finished_at=NULL, traceback=NULL, retrain_status=NULL, "
                "retrain_error=NULL, retrain_started_at=NULL",
                (cell_hash, dataset, teacher, student, method, seed, json.dumps(config, sort_keys=True), now),
            )

    @guarded
    def finish(self, cell_hash: str, metrics: dict[str, Any], timings: dict[str, float],
               artifacts: dict[str, str]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE cells SET status='done', metrics=?, timings=?, artifacts=?, error=NULL, finished_at=?, "
                "retrain_status=NULL, retrain_error=NULL, retrain_started_at=NULL WHERE hash=?",
                (json.dumps(metrics), json.dumps(timings), json.dumps(artifacts), time.time(), cell_hash),
            )

    @guarded
    def update_metrics(self, cell_hash: str, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into a stored cell's metrics (in one transaction, so concurrent writers keep theirs)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM cells WHERE hash=?", (cell_hash,)).fetchone()
            if row is None:
                raise KeyError(cell_hash)
            metrics = self._record(row).metrics  # a row that does not parse is a StoreRowError, never overwritten
            db.execute("UPDATE cells SET metrics=? WHERE hash=?", (json.dumps({**metrics, **updates}), cell_hash))

    @guarded
    def fail(self, cell_hash: str, error: str, timings: dict[str, float] | None = None,
             traceback: str | None = None) -> bool:
        """Record a cell's failure (``error`` one line, ``traceback`` for ``--debug``); whether anything was recorded.

        Status only moves forward: a cell that finished stays finished, whatever
        fails or is interrupted after. If it was being trained again, the
        failure is its retrain attempt's (the previous result stands); if not
        (say, it was being explained), nothing is recorded and this is False.
        """
        now = time.time()
        with self._tx() as db:
            changed = db.execute(
                "UPDATE cells SET status='failed', error=?, timings=?, finished_at=?, traceback=? "
                "WHERE hash=? AND status != 'done'",
                (error, json.dumps(timings or {}), now, traceback, cell_hash),
            ).rowcount
            if not changed:
                changed = db.execute(
                    "UPDATE cells SET retrain_status='failed', retrain_error=?, traceback=? "
                    "WHERE hash=? AND status='done' AND retrain_status='running'",
                    (error, traceback, cell_hash),
                ).rowcount
        return bool(changed)

    # ---- runs: the settings each ``medkd-bench run`` was given and the cells it planned, so a
    # leaderboard page holds only cells computed under one set of settings.
    @guarded
    def begin_run(self, settings: dict[str, Any], cell_hashes: list[str]) -> int:
        """Record a run's result-affecting settings and its planned cells; the run's id."""
        with self._tx() as db:
            run_id = db.execute("INSERT INTO runs (settings, started_at) VALUES (?, ?)",
                                (json.dumps(settings, sort_keys=True), time.time())).lastrowid
            db.executemany("INSERT OR IGNORE INTO run_cells VALUES (?, ?)", [(run_id, h) for h in cell_hashes])
        assert run_id is not None
        return run_id

    @guarded
    def run_settings(self) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        """Per cell hash, the (run id, settings) of every run that planned it (stores before runs: none)."""
        if "runs" not in self._tables():  # a store opened read-only may predate the runs table
            return {}
        out: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for row in self._db.execute("SELECT run_cells.cell_hash, runs.id, runs.settings FROM run_cells "
                                    "JOIN runs ON runs.id = run_cells.run_id ORDER BY runs.id"):
            try:
                settings = _loads(row[2])
            except ValueError as exc:  # its cells still render, on the page of their other runs or the default
                self._skip(StoreRowError(f"run store {self.path}: run {row[1]}'s settings are unreadable "
                                         f"({one_line(exc)}); its cells are paged as if it had recorded none"))
                continue
            out.setdefault(row[0], []).append((int(row[1]), settings))
        return out

    @guarded
    def mark_running_interrupted(self) -> int:
        """Cells (and retrain attempts) left ``running`` by a killed run are marked failed: interrupted; how many.

        Called by a run holding the work dir's lock, so no other run can own them.
        A done cell's attempt fails, never the cell: its previous result stands.
        """
        with self._tx() as db:
            cells = db.execute(f"UPDATE cells SET status='failed', error='{INTERRUPTED_BY_KILL}', finished_at=? "
                               "WHERE status='running'", (time.time(),)).rowcount
            attempts = db.execute(f"UPDATE cells SET retrain_status='failed', retrain_error='{INTERRUPTED_BY_KILL}' "
                                  "WHERE status='done' AND retrain_status='running'").rowcount
        return cells + attempts

    # ---- tuning trials (``run --tune``): written once each, so an interrupted tuning resumes after the last.
    @guarded
    def save_trial(self, trial: TrialRecord) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (trial.study, trial.number, trial.arm, json.dumps(trial.params, sort_keys=True), trial.state,
                        trial.value, json.dumps(trial.record, sort_keys=True), time.time()))

    @guarded
    def trials(self, study: str | None = None) -> list[TrialRecord]:
        """A study's trials by number (all studies' if None); a store that predates tuning has none."""
        if "trials" not in self._tables():
            return []
        query, args = "SELECT * FROM trials", ()
        if study is not None:
            query, args = query + " WHERE study = ?", (study,)
        return [TrialRecord(r["study"], int(r["number"]), r["arm"], _loads(r["params"]), r["state"], r["value"],
                            _loads(r["record"]))
                for r in self._db.execute(query + " ORDER BY study, number", args).fetchall()]

    # ---- explanations: keyed by the cell plus the explainer and its sample, so a
    # rerun with another explainer or sample size explains without retraining.
    @guarded
    def explanation(self, cell_hash: str, explainer: str, n_images: int, seed: int) -> ExplanationRecord | None:
        row = self._db.execute(
            "SELECT * FROM explanations WHERE cell_hash=? AND explainer=? AND n_images=? AND seed=?",
            (cell_hash, explainer, n_images, seed),
        ).fetchone()
        if row is None:
            return None
        try:
            return self._explanation(row)
        except StoreRowError as exc:  # computed again, like a missing one
            self._skip(exc)
            return None

    @guarded
    def save_explanation(self, cell_hash: str, explainer: str, n_images: int, seed: int, status: str,
                         metrics: dict[str, Any] | None = None, artifacts: dict[str, str] | None = None,
                         error: str | None = None, traceback: str | None = None) -> None:
        """Store one explainer's result for a cell; a ``done`` result is never replaced by a failure."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO explanations (cell_hash, explainer, n_images, seed, status, metrics, artifacts, error, "
                "finished_at, traceback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(cell_hash, explainer, n_images, seed) DO UPDATE SET status=excluded.status, "
                "metrics=excluded.metrics, artifacts=excluded.artifacts, error=excluded.error, "
                "finished_at=excluded.finished_at, traceback=excluded.traceback "
                "WHERE explanations.status != 'done' OR excluded.status = 'done'",
                (cell_hash, explainer, n_images, seed, status, json.dumps(metrics or {}),
                 json.dumps(artifacts or {}), error, time.time(), traceback),
            )

    @guarded
    def explanations(self, cell_hashes: list[str] | None = None) -> list[ExplanationRecord]:
        rows = self._db.execute("SELECT * FROM explanations").fetchall()
        recs = []
        for row in rows:
            try:
                recs.append(self._explanation(row))
            except StoreRowError as exc:
                self._skip(exc)
        recs.sort(key=lambda r: r.finished_at or 0.0)  # in Python: a text finished_at must not reorder the rest
        return recs if cell_hashes is None else [r for r in recs if r.cell_hash in set(cell_hashes)]

    def _explanation(self, row: sqlite3.Row) -> ExplanationRecord:
        try:
            return ExplanationRecord(**_parsed(row, EXPLANATION_COLUMNS))
        except ValueError as exc:
            raise StoreRowError(
                f"run store {self.path}: explanation {row['explainer']} ({row['n_images']} images, seed {row['seed']}) "
                f"of cell {row['cell_hash']} is unreadable ({exc}); left out, and computed again by the next run"
            ) from None

    @guarded
    def cells(self, dataset: str | None = None, status: str | None = None) -> list[CellRecord]:
        query, args = "SELECT * FROM cells WHERE 1=1", []
        if dataset is not None:
            query += " AND dataset = ?"
            args.append(dataset)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        query += " ORDER BY dataset, method, teacher, student, seed"
        records = []
        for row in self._db.execute(query, args).fetchall():
            try:
                records.append(self._record(row))
            except StoreRowError as exc:  # the rest of the store stays usable
                self._skip(exc)
        return records

    def _record(self, row: sqlite3.Row) -> CellRecord:
        try:
            return _cell_record(row)
        except ValueError as exc:
            raise StoreRowError(f"run store {self.path}: cell {_cell_name(row)} is unreadable ({exc}); left out of "
                                "pages and exports, and `medkd-bench run` trains it again") from None
