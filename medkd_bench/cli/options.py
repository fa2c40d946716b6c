"""Options several commands share, and the parsing of ``KEY=VALUE`` style flags.

Every parse error is a :class:`~medkd_bench.errors.MedkdError` naming the
flag and the value, so :func:`medkd_bench.cli.main.main` prints one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from medkd_bench.cli.app import DEFAULT_LEADERBOARD_DIR, DEFAULT_WORK_DIR
from medkd_bench.errors import MedkdError

if TYPE_CHECKING:
    from medkd_bench.registry import Registry


def split_names(values: Sequence[str]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


#: Image sizes a run accepts: below 32 px the stride-16 saliency maps are 1x1 (blank); above 1024 px
#: no built-in model fits a batch in memory on the machines we target.
IMG_SIZE = click.IntRange(32, 1024)


def number_text(x: float) -> str:
    """A bound as people write it: ``2147483647`` and ``1048576``, not ``2.14748e+09``; ``0.5`` as is."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


class FiniteFloat(click.ParamType):
    """A finite number in a range: click's FloatRange lets ``nan`` through every bound."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {number_text(self.low)}")
        if self.high is not None:
            parts.append(f"<= {number_text(self.high)}")
        return "a finite number" + (" " + " and ".join(parts) if parts else "")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number (expected {self.describe()})", param, ctx)
        too_low = self.low is not None and (number < self.low or (self.low_open and number == self.low))
        too_high = self.high is not None and number > self.high
        if not math.isfinite(number) or too_low or too_high:
            self.fail(f"{value!r} is out of range (expected {self.describe()})", param, ctx)
        return number


#: The largest value of each numeric option, by parameter name, on every command (plugins' commands too),
#: where the option's own type sets none: past these a value is a typo, not an experiment, and taken
#: literally it costs hours or all memory before anything fails (``--seeds 100000 --dry-run`` ran 95 s
#: and grew to 1.45 GB; one more digit was killed by the kernel). :func:`bound_numeric_options` applies them.
UPPER_BOUNDS: dict[str, float] = {
    # Every cell once per seed: a seed of the full matrix trains ~20 min on 2 CPU cores, and a 1000-seed
    # full --dry-run alone took 20 s and 780 MB to plan; 100 is past any study's seed count.
    "seeds": 100, "teacher_seeds": 100,
    "seed": 2**31 - 1,  # what every seeded library takes
    "explain_images": 1000, "sanity_images": 1000,  # Score-CAM: one forward pass per channel per image
    "images": 100,  # `explain --images`: per class, drawn in one PNG
    "latency_runs": 10_000,
    "bootstrap": 100_000,  # resamples per confidence interval; the default is 1000
    "teacher_cache_mb": 1 << 20,  # 1 TiB
    "temperature": 100.0,  # kd's own bound
    "jobs": 256, "ray_cpus": 4096, "cpus_per_cell": 4096, "gpus_per_cell": 64, "max_retries": 100,
    "img_size": 1024,  # as IMG_SIZE
    "num_classes": 10_000, "population": 10_000, "generations": 10_000, "repeats": 1000,
    "latency_ms": 1e6, "gmacs": 1e6,
}
#: For a numeric option not in :data:`UPPER_BOUNDS` (a plugin's, say).
DEFAULT_UPPER_BOUND = 1_000_000
#: For a numeric ``--dataset-option`` / ``--method-option`` whose spec declares no upper bound: the
#: largest seed (options are counts, fractions and seeds); specs bound their counts more tightly.
SPEC_OPTION_MAX = 2**31 - 1
#: Characters of a number as text (flag, option or experiment-file value): far past any bound above, far
#: below the 4300 digits at which Python's int() refuses with an error that names nothing.
MAX_NUMBER_CHARS = 64


def upper_bound(name: str | None) -> float:
    return UPPER_BOUNDS.get(name or "", DEFAULT_UPPER_BOUND)


def bounded_type(name: str | None, kind: click.ParamType) -> click.ParamType:
    """``kind`` with the option's upper bound (:data:`UPPER_BOUNDS`) where it has none; other types unchanged.

    Floats also become finite (click's float types let ``nan`` and ``inf`` through every bound).
    """
    high = upper_bound(name)
    if isinstance(kind, click.IntRange):  # before IntParamType: IntRange is one
        if kind.max is not None:
            return kind
        return click.IntRange(kind.min, int(high), min_open=kind.min_open, clamp=kind.clamp)
    if isinstance(kind, click.types.IntParamType):
        return click.IntRange(None, int(high))
    if isinstance(kind, click.FloatRange):
        if kind.max is not None:
            return kind
        return FiniteFloat(kind.min, high, low_open=kind.min_open)
    if isinstance(kind, click.types.FloatParamType):
        return FiniteFloat(None, high)
    if isinstance(kind, FiniteFloat) and kind.high is None:
        return FiniteFloat(kind.low, high, low_open=kind.low_open)
    return kind


def bound_numeric_options(command: click.Command) -> click.Command:
    """Give every numeric option of ``command`` (and of its subcommands) an upper bound; ``command``.

    The ``medkd-bench`` group calls this for each command added to it, so no
    command, built-in or a plugin's, takes an unbounded number: a value past the
    bound is one line naming the option (exit 2) before any work, whether it came
    from the command line or from an experiment file (whose values go through
    the same types). Idempotent.
    """
    for param in command.params:
        param.type = bounded_type(param.name, param.type)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            bound_numeric_options(sub)
    return command


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
            raise MedkdError(f"{flag} {v}: no {kind} {name!r} (registered: {', '.join(sorted(specs)) or 'none'})")
        spec = specs[name]
        if option not in spec.options:
            raise MedkdError(f"{flag} {v}: {kind} {name!r} has no option {option!r} "
                             f"(known: {', '.join(sorted(spec.options)) or 'none'})")
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
    from medkd_bench.system.weights import read_state_dict

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
