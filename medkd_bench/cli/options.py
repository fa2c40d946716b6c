"""Options several commands share, and the parsing of ``KEY=VALUE`` style flags.

Every parse error is a :class:`~medkd_bench.errors.MedkdError` naming the
flag and the value, so :func:`medkd_bench.cli.main.main` prints one line.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from medkd_bench.cli.app import DEFAULT_LEADERBOARD_DIR, DEFAULT_WORK_DIR
from medkd_bench.cli.types import (  # noqa: F401  (re-exported: commands import them from here)
    DEFAULT_UPPER_BOUND,
    MAX_NUMBER_CHARS,
    SPEC_OPTION_MAX,
    UPPER_BOUNDS,
    FiniteFloat,
    bound_numeric_options,
    bounded_type,
    number_text,
    upper_bound,
)
from medkd_bench.errors import MedkdError
from medkd_bench.registry import unknown_names

if TYPE_CHECKING:
    from medkd_bench.registry import Registry


def split_names(values: Sequence[str]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


#: Image sizes a run accepts: below 32 px the stride-16 saliency maps are 1x1 (blank); above 1024 px
#: no built-in model fits a batch in memory on the machines we target.
IMG_SIZE = click.IntRange(32, 1024)




_INT = re.compile(r"^[+-]?\d+$")


def _typed_option(flag: str, text: str, default: Any, bounds: tuple[float | None, float | None] | None) -> Any:
    """``text`` as the type of the option's ``default``, within ``bounds`` (numbers default to 0 .. SPEC_OPTION_MAX)."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise MedkdError(f"{flag}: expected true or false")
        return text.lower() in ("true", "1")
    if isinstance(default, int | float):
        kind = "a whole number" if isinstance(default, int) else "a number"
        if len(text.strip()) > MAX_NUMBER_CHARS:
            raise MedkdError(f"{flag[:80]}...: {len(text.strip())} characters, too long for {kind}")
        if isinstance(default, int) and not _INT.match(text.strip()):
            raise MedkdError(f"{flag}: expected {kind} (the default is {default})")
        try:
            value: float = int(text) if isinstance(default, int) else float(text)
        except ValueError:
            raise MedkdError(f"{flag}: expected {kind} (the default is {default})") from None
        low, high = bounds if bounds is not None else (0, None)
        high = SPEC_OPTION_MAX if high is None else high
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            span = f"{'-inf' if low is None else number_text(low)} .. {number_text(high)}"
            raise MedkdError(f"{flag}: {text} is out of range (allowed: {span})")
        return value
    return text


def parse_spec_options(values: Sequence[str], specs: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` flags for specs with ``options`` and ``option_ranges`` (datasets, methods).

    Each is checked against its spec: a registered name, a known key, the type of
    the key's default and its range; the error names the flag and what is wrong.
    """
    flag = f"--{kind}-option"
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise MedkdError(f"{flag} {v!r}: expected {kind.upper()}.KEY=VALUE")
        if name not in specs:
            raise MedkdError(f"{flag} {v}: {unknown_names(kind, [name], specs)}")
        spec = specs[name]
        if option not in spec.options:
            close = difflib.get_close_matches(option, list(spec.options), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(spec.options)) or 'none'}"
            raise MedkdError(f"{flag} {v}: {kind} {name!r} has no option {option!r} ({hint})")
        out.setdefault(name, {})[option] = _typed_option(f"{flag} {v}", value, spec.options[option],
                                                         spec.option_ranges.get(option))
    return out


def parse_dataset_options(values: Sequence[str], registry: Registry) -> dict[str, dict[str, Any]]:
    """``DATASET.KEY=VALUE`` flags, each checked against the dataset's spec: known key, its default's type, range."""
    return parse_spec_options(values, registry.datasets, "dataset")


def parse_method_options(values: Sequence[str], registry: Registry) -> dict[str, dict[str, Any]]:
    """``METHOD.KEY=VALUE`` flags (``dkd.beta=8``), each checked against the method's spec."""
    return parse_spec_options(values, registry.methods, "method")


def parse_weights(values: Sequence[str]) -> dict[str, Path]:
    """``NAME=PATH`` flags; each file is read (by content, weights only) now, before any worker starts."""
    from medkd_bench.models.weights import read_state_dict

    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not (sep and name and path):
            raise MedkdError(f"--weights {v!r}: expected NAME=PATH")
        if not Path(path).is_file():
            raise MedkdError(f"--weights {name}={path}: no such file")
        try:
            read_state_dict(Path(path))
        except MedkdError as exc:
            raise MedkdError(f"--weights {name}={path}: {exc}") from None
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
