"""Options several commands share, and the parsing of ``KEY=VALUE`` style flags.

Every parse error is a :class:`~medkd_bench.errors.MedkdError` naming the
flag and the value, so :func:`medkd_bench.cli.main.main` prints one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from medkd_bench.cli.app import DEFAULT_LEADERBOARD_DIR, DEFAULT_WORK_DIR
from medkd_bench.errors import MedkdError


def split_names(values: Sequence[str]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_dataset_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise MedkdError(f"--dataset-option {v!r}: expected DATASET.KEY=VALUE")
        out.setdefault(name, {})[option] = _parse_value(value)
    return out


def parse_weights(values: Sequence[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not (sep and name and path):
            raise MedkdError(f"--weights {v!r}: expected NAME=PATH")
        if not Path(path).is_file():
            raise MedkdError(f"--weights {name}={path}: no such file")
        out[name] = Path(path)
    return out


def plugin_option(f: Callable) -> Callable:
    return click.option(
        "--plugin", "plugin_files", multiple=True, type=click.Path(path_type=Path),
        help="Load a plugin from a single Python file (repeatable).",
    )(f)


def work_dir_option(f: Callable) -> Callable:
    f = click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
                     help="Run store, checkpoints and caches.")(f)
    return click.option("--leaderboard-dir", type=click.Path(path_type=Path), default=DEFAULT_LEADERBOARD_DIR,
                        show_default=True, help="Where markdown leaderboards and panels go.")(f)


def bootstrap_option(f: Callable) -> Callable:
    from medkd_bench.evaluate.stats import RESAMPLES

    return click.option("--bootstrap", type=click.IntRange(100), default=RESAMPLES, show_default=True,
                        metavar="N", help="Bootstrap resamples per confidence interval in the leaderboards.")(f)
