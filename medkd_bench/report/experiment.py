"""The settings of a ``run`` that reproduces a page, said two ways: as flags and as an experiment file.

The provenance code collects *entries*, ``(key, value)`` pairs with typed
values, once; both renderings come from them, so the command line and the TOML
file on a page cannot disagree. Keys are ``run``'s option names, which its
``--config`` file accepts as they are. The report layer does not import the
CLI, so the flag names are spelt here; tests/test_leaderboard.py runs a page's
TOML through ``run --config --dry-run`` and checks it plans the page's cells.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from medkd_bench.report.toml_text import dumps

#: A ``run`` option and its value: a string, number, True (a flag), a list of names, or a table.
Entry = tuple[str, Any]
#: Options whose value is ``{NAME: {KEY: VALUE}}``: one ``--X NAME.KEY=VALUE`` flag per pair.
SPEC_TABLES = {"dataset-options": "--dataset-option", "method-options": "--method-option",
               "tuned-options": "--tuned-option"}
#: Options whose value is ``{NAME: VALUE}``: one ``--X NAME=VALUE`` flag per name.
NAMED_TABLES = {"weights": "--weights"}


def command_flags(entries: Sequence[Entry]) -> list[str]:
    """The entries as ``run`` flags, in order: lists comma-joined, ``True`` as a bare flag, tables one flag per key."""
    flags: list[str] = []
    for key, value in entries:
        if key in SPEC_TABLES:
            flags += [f for name, options in value.items() for k, v in options.items()
                      for f in (SPEC_TABLES[key], f"{name}.{k}={v}")]
        elif key in NAMED_TABLES:
            flags += [f for name, v in value.items() for f in (NAMED_TABLES[key], f"{name}={v}")]
        elif value is True:
            flags.append(f"--{key}")
        elif isinstance(value, list):
            flags += [f"--{key}", ",".join(value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


def command_line(entries: Sequence[Entry]) -> str:
    """The entries as a ``medkd-bench run`` command, quoted for a POSIX shell."""
    return shlex.join(["medkd-bench", "run", *command_flags(entries)])


def experiment_toml(entries: Sequence[Entry]) -> str:
    """The entries as a TOML experiment file that ``medkd-bench run --config`` reads."""
    data: dict[str, Any] = {}
    for key, value in entries:
        if key in data and isinstance(value, dict):  # the same table twice: one table, later keys winning
            data[key] = {name: {**data[key].get(name, {}), **v} if isinstance(v, dict) else v
                         for name, v in {**data[key], **value}.items()}
        else:
            data[key] = value
    return dumps(data)
