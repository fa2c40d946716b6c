"""Click parameter types every command shares: finite floats and the upper bound of every numeric option.

Apart from :mod:`medkd_bench.cli.options` because the ``medkd-bench`` group
(:mod:`medkd_bench.cli.app`) bounds each command as it joins, and options
imports the group's defaults.
"""

from __future__ import annotations

import math
from typing import Any

import click


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
    "latency_runs": 10_000, "latency_seconds": 3600.0, "latency_attempts": 100,
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
