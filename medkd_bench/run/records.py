"""What the run store's rows hold, read back checked: the record types and the column parsers.

Kept apart from :mod:`medkd_bench.run.store` (the SQLite file and its
transactions) so each stays small: a row that does not parse is a
:class:`StoreRowError` naming the store and the row, never a crash elsewhere.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medkd_bench.errors import MedkdError, one_line

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
    finished_at REAL,
    traceback   TEXT,
    retrain_status     TEXT,
    retrain_error      TEXT,
    retrain_started_at REAL
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
    traceback   TEXT,
    PRIMARY KEY (cell_hash, explainer, n_images, seed)
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    settings    TEXT NOT NULL,
    started_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_cells (
    run_id      INTEGER NOT NULL,
    cell_hash   TEXT NOT NULL,
    PRIMARY KEY (run_id, cell_hash)
);
CREATE TABLE IF NOT EXISTS trials (
    study       TEXT NOT NULL,
    number      INTEGER NOT NULL,
    arm         TEXT NOT NULL,
    params      TEXT NOT NULL,
    state       TEXT NOT NULL,
    value       REAL,
    record      TEXT NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (study, number)
);
"""

#: Columns added after the first release, with their types: older stores gain them when opened for writing.
ADDED_COLUMNS = {"cells": {"traceback": "TEXT", "retrain_status": "TEXT", "retrain_error": "TEXT",
                           "retrain_started_at": "REAL"},
                 "explanations": {"traceback": "TEXT"}}

class StoreError(MedkdError):
    """The run store cannot be opened, read or written; the message names the file."""


class StoreRowError(StoreError):
    """One store row does not parse; the message names the store file and the row (cell, explanation or run)."""


#: The statuses a cell row may hold, and an explanation row.
CELL_STATUSES = frozenset({"running", "done", "failed"})
EXPLANATION_STATUSES = frozenset({"done", "failed"})


@dataclass
class TrialRecord:
    """One finished tuning trial (``run --tune``): its point, how it ended and what validation said."""

    study: str
    number: int
    arm: str
    params: dict[str, Any]
    state: str  # "complete", "pruned" or "failed"
    value: float | None  # best validation accuracy (complete trials)
    record: dict[str, Any]  # intermediate values, epochs, seconds, config hash, error


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
    traceback: str | None = None
    #: A done cell being trained again: ``running``, or ``failed`` (then ``retrain_error`` says why); None otherwise.
    retrain_status: str | None = None
    retrain_error: str | None = None


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
    traceback: str | None = None


def _loads(text: str | None) -> dict:
    """A JSON-object column (NULL or empty: ``{}``); ValueError if it is not JSON or not an object."""
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise ValueError(f"{type(text).__name__} where JSON text belongs")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"JSON {type(value).__name__} where an object belongs")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} {value!r} where text belongs")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a time")
    return float(value)


def _status(value: Any, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(sorted(allowed))}")
    return value


def _parsed(row: sqlite3.Row, columns: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """Each of ``columns`` read through its parser; ValueError naming the first column that does not parse."""
    out = {}
    for name, parse in columns.items():
        try:
            out[name] = parse(row[name] if name in row.keys() else None)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{name}: {one_line(exc)}") from exc
    return out


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


#: How each cells column is read back; a column an older store lacks reads None.
CELL_COLUMNS: dict[str, Callable[[Any], Any]] = {
    "hash": _text, "dataset": _text, "teacher": _text, "student": _text, "method": _text, "seed": _integer,
    "status": lambda v: _status(v, CELL_STATUSES), "config": _loads, "metrics": _loads, "timings": _loads,
    "artifacts": _loads, "error": _optional_text, "started_at": _time, "finished_at": _time,
    "traceback": _optional_text, "retrain_status": _optional_text, "retrain_error": _optional_text,
}
EXPLANATION_COLUMNS: dict[str, Callable[[Any], Any]] = {
    "cell_hash": _text, "explainer": _text, "n_images": _integer, "seed": _integer,
    "status": lambda v: _status(v, EXPLANATION_STATUSES), "metrics": _loads, "artifacts": _loads,
    "error": _optional_text, "finished_at": _time, "traceback": _optional_text,
}


def _cell_record(row: sqlite3.Row) -> CellRecord:
    """A cells row as a :class:`CellRecord`; ValueError naming the column that does not parse.

    A done row must also carry its test accuracy as a number: every page and
    the run's own report read it, and every medkd-bench version stored it.
    """
    values = _parsed(row, CELL_COLUMNS)
    accuracy = values["metrics"].get("accuracy")
    if values["status"] == "done" and (isinstance(accuracy, bool) or not isinstance(accuracy, int | float)):
        raise ValueError(f"metrics: a done cell's accuracy is {accuracy!r}, not a number")
    return CellRecord(**values)


def _cell_name(row: sqlite3.Row) -> str:
    """A cells row as people read it (dataset, method, teacher, student, seed), whatever its columns hold."""
    parts = [row["dataset"], row["method"], row["teacher"], row["student"]]
    words = " ".join(str(p) for p in parts if p not in (None, ""))
    return f"{words} seed {row['seed']} (hash {row['hash']})"


def _readable(row: sqlite3.Row) -> bool:
    try:
        _cell_record(row)
    except ValueError:
        return False
    return True
