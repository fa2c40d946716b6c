"""``--config experiment.toml``: a command's options from a TOML file, the command line overriding them.

The file's values become the command's click defaults (``ctx.default_map``),
so a flag on the command line wins and every value, wherever it came from,
goes through the same click type and range checks as the flag: ``epochs = 0``
fails exactly as ``--epochs 0`` does. Only the file's *shape* is checked
here (known keys, TOML types that match the option); the error then names the
file and the key instead of the flag.

Keys are the options' names, with dashes or underscores (``img-size``,
``img_size``). Options taken several times take a list or a comma string.
The ``NAME.KEY=VALUE`` options also take tables (``[method-options.dkd]
beta = 8``), written back as the strings the flag takes so that one parser
checks both; for them the command line overrides the file per key, not as a
whole. ``MEDKD_DATA`` (an environment variable) still beats ``data-root``
in the file: where the data lies is the machine's business, not the experiment's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from medkd_bench.cli.options import FiniteFloat
from medkd_bench.errors import MedkdError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

#: Options that are not settings of an experiment: refused in a file, with the reason.
NOT_IN_FILE = {
    "config": "an experiment file cannot name another one",
    "dry_run": "an action, not a setting of the experiment: pass --dry-run on the command line",
}
#: ``NAME.KEY=VALUE`` options: a table of tables in the file, merged per key with the command line's.
SPEC_OPTIONS = ("dataset_options", "method_options", "tuned_options")
#: ``NAME=VALUE`` options: a table in the file, merged per name with the command line's.
NAMED_OPTIONS = ("weights",)
_META = "medkd_bench.config_file"


@dataclass
class ExperimentFile:
    """What a command read from its ``--config`` file: for naming the file and key in errors, and merging."""

    path: Path
    #: parameter name -> the key as the file spells it
    keys: dict[str, str] = field(default_factory=dict)
    #: parameter name -> the flag strings the file gave a keyed option (``dkd.beta=8``)
    keyed: dict[str, list[str]] = field(default_factory=dict)

    def error(self, key: str, message: str) -> MedkdError:
        return MedkdError(f"{self.path}: key {key!r}: {message}")


def _norm(key: str) -> str:
    return key.replace("_", "-")


def _long_flags(param: click.Parameter) -> list[str]:
    return [o for o in param.opts if o.startswith("--")]


def file_keys(command: click.Command) -> dict[str, click.Option]:
    """Every key a file may use for ``command`` (dashed): each option's flag name and its parameter name."""
    keys: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name:
            for name in [f.removeprefix("--") for f in _long_flags(param)] + [param.name]:
                keys[_norm(name)] = param
    return keys


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a table"}
    kind = next((v for k, v in kinds.items() if isinstance(value, k)), type(value).__name__)
    return kind if isinstance(value, list | dict) else f"{value!r} ({kind})"


def _scalar_text(value: Any) -> str | None:
    """A TOML scalar as the flag's text (``true``, ``8``, ``0.5``), or None for a list or table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    return None


def _strings(value: Any, key: str, exp: ExperimentFile) -> list[str]:
    """A multi-value option: a list of strings, or one comma string (the command splits it like the flag)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise exp.error(key, f"expected a list of strings or a comma-separated string, got {_describe(value)}")


def _keyed(param: click.Option, value: Any, key: str, exp: ExperimentFile) -> list[str]:
    """A ``NAME.KEY=VALUE`` or ``NAME=VALUE`` option given as a table: the flag strings it stands for."""
    if not isinstance(value, dict):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)  # the flag's own form: ["dkd.beta=8"]
        form = "NAME=PATH" if param.name in NAMED_OPTIONS else "NAME.KEY=VALUE"
        raise exp.error(key, f"expected a table, or a list of {form} strings, got {_describe(value)}")
    out: list[str] = []
    for name, inner in value.items():
        if param.name in NAMED_OPTIONS:
            if not isinstance(inner, str):
                raise exp.error(f"{key}.{name}", f"expected a path (a string), got {_describe(inner)}")
            out.append(f"{name}={inner}")
            continue
        if not isinstance(inner, dict):
            raise exp.error(f"{key}.{name}", f"expected a table of options, got {_describe(inner)}")
        for option, v in inner.items():
            text = _scalar_text(v)
            if text is None:
                raise exp.error(f"{key}.{name}.{option}",
                                f"expected a string, number or boolean, got {_describe(v)}")
            out.append(f"{name}.{option}={text}")
    return out


def _checked(param: click.Option, value: Any, key: str, exp: ExperimentFile) -> Any:
    """``value`` in the form click takes for ``param``, if its TOML type fits; click then converts and checks it.

    The TOML type is checked first because click would coerce silently: ``int(2.7)``
    is 2, ``int(True)`` is 1, and any scalar is a valid string.
    """
    if param.name in SPEC_OPTIONS or param.name in NAMED_OPTIONS:
        return _keyed(param, value, key, exp)
    if param.multiple:
        return _strings(value, key, exp)
    if param.is_flag:
        if not isinstance(value, bool):
            raise exp.error(key, f"expected true or false, got {_describe(value)}")
        return value
    kind = param.type
    if isinstance(kind, click.types.IntParamType):  # IntRange too
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(kind, click.types.FloatParamType | FiniteFloat):  # FloatRange too
        ok, expected = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(kind, click.types.StringParamType):  # `jobs = 2` reads as naturally as `jobs = "2"`
        ok, expected = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)), \
            "a string"
    else:  # paths and the like
        ok, expected = isinstance(value, str), "a string"
    if not ok:
        raise exp.error(key, f"expected {expected}, got {_describe(value)}")
    return value


#: Limits on an experiment file, checked before tomllib reads it. An experiment is a page of options: a
#: larger file, deeper nesting or a longer number is a mistake or an attack, and tomllib would meet it with
#: a RecursionError (arrays or inline tables some 1000 deep) or a ValueError (an integer past 4300 digits)
#: that names neither the file nor the line.
MAX_FILE_BYTES = 1 << 20
#: Arrays and inline tables inside one another (``[method-options.dkd]`` tables are headers, not nesting).
MAX_NESTING = 32


def read_experiment(path: Path, command: click.Command) -> tuple[ExperimentFile, dict[str, Any]]:
    """The file and the ``default_map`` it gives ``command``; a one-line error naming the file (and key, line)."""
    try:
        if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
            raise MedkdError(f"{path}: {path.stat().st_size} bytes, too large for an experiment file "
                             f"(at most {MAX_FILE_BYTES})")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MedkdError(f"{path}: cannot read the experiment file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise MedkdError(f"{path}: not a UTF-8 text file") from None
    beyond = _beyond_limits(text)
    if beyond is not None:
        line, what = beyond
        raise MedkdError(f"{path}:{line}: {what}{_key_on_line(text, line)}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MedkdError(_syntax_error(path, text, exc)) from None
    except (RecursionError, ValueError) as exc:  # past the limits above in some way they do not foresee
        raise MedkdError(f"{path}: not a TOML file medkd-bench can read ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    keys = file_keys(command)
    exp = ExperimentFile(path)
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        if _norm(key) not in keys:
            close = difflib.get_close_matches(_norm(key), sorted(keys), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MedkdError(f"{path}: unknown key {key!r}{hint}")
        param = keys[_norm(key)]
        assert param.name is not None
        if param.name in NOT_IN_FILE:
            raise exp.error(key, f"not allowed in an experiment file: {NOT_IN_FILE[param.name]}")
        if param.name in exp.keys:
            raise MedkdError(f"{path}: keys {exp.keys[param.name]!r} and {key!r} are the same option")
        exp.keys[param.name] = key
        defaults[param.name] = _checked(param, value, key, exp)
        if param.name in SPEC_OPTIONS or param.name in NAMED_OPTIONS:
            exp.keyed[param.name] = defaults[param.name]
    return exp, defaults


_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_.\"'-]+)\s*=")
_WORD = re.compile(r"[0-9A-Za-z_]+")


def _key_on_line(text: str, line: int) -> str:
    """`` (key 'k')`` for the key that line ``line`` (1-based) assigns, or ``""``."""
    lines = text.splitlines()
    key = _KEY_LINE.match(lines[line - 1]) if 0 < line <= len(lines) else None
    return f" (key {key.group(1)!r})" if key else ""


def _string_end(text: str, i: int) -> int:
    """The index just past the TOML string that starts at ``text[i]`` (any of the four kinds)."""
    for quote in ('"""', "'''"):
        if text.startswith(quote, i):
            j = i + 3
            while j < len(text) and not text.startswith(quote, j):
                j += 2 if quote == '"""' and text[j] == "\\" else 1
            j += 3
            while j < len(text) and text[j] == quote[0]:  # up to two quotes may end the content
                j += 1
            return j
    j = i + 1
    while j < len(text) and text[j] not in (text[i], "\n"):
        j += 2 if text[i] == '"' and text[j] == "\\" else 1
    return j + 1


def _beyond_limits(text: str) -> tuple[int, str] | None:
    """``(line, what)`` of the first array or inline table nested past :data:`MAX_NESTING`, or number longer
    than ``MAX_NUMBER_CHARS``, outside strings and comments; None when the file is within both.

    A scan, not a parse (tomllib parses afterwards): brackets of table headers count one or two levels
    on their own line, and any word that starts with a digit counts as a number.
    """
    from medkd_bench.cli.options import MAX_NUMBER_CHARS

    depth, line, i = 0, 1, 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            end = _string_end(text, i)
            line += text.count("\n", i, end)
            i = end
            continue
        if c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if c == "\n":
            line += 1
        elif c in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line, f"arrays or inline tables nested more than {MAX_NESTING} deep"
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c.isdigit() and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            word = _WORD.match(text, i)
            assert word is not None
            if len(word.group()) > MAX_NUMBER_CHARS:
                return line, f"a number of {len(word.group())} characters; numbers have at most {MAX_NUMBER_CHARS}"
            i = word.end()
            continue
        i += 1
    return None


def _syntax_error(path: Path, text: str, exc: Exception) -> str:
    """``file:LINE:COL: not valid TOML: why (key 'k')``: the position tomllib reports, and the key on that line."""
    message = str(exc)
    found = _POSITION.search(message)
    if not found:
        return f"{path}: not valid TOML: {message}"
    line, column = int(found.group(1)), int(found.group(2))
    return f"{path}:{line}:{column}: not valid TOML: {message[:found.start()]}{_key_on_line(text, line)}"


def _load(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """The eager ``--config`` callback: the file's values become this command's defaults before any other option."""
    if value is None or ctx.resilient_parsing:
        return
    exp, defaults = read_experiment(value, ctx.command)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_META] = exp


def config_option(f: Callable) -> Callable:
    return click.option(
        "--config", type=click.Path(path_type=Path, dir_okay=False), is_eager=True, expose_value=False,
        callback=_load, metavar="FILE.toml",
        help="Take the options from a TOML experiment file (keys: the option names); flags given here override "
             "it.")(f)


def _flag_pattern(flags: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(rf"(?<![\w-]){re.escape(f)}(?![\w-])" for f in flags))


class ExperimentCommand(click.Command):
    """A command with ``--config``: its errors about a value from the file name the file and the key.

    click's own errors (a value of the wrong range) are caught as it parses; the
    command's errors (an unknown teacher) name the flag, as every error does, so
    one that names the flag of a value the file gave gets the file and key in front.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            rest = super().parse_args(ctx, args)
        except click.BadParameter as exc:
            exp = ctx.meta.get(_META)
            name = exc.param.name if exc.param is not None else None
            if exp is not None and name in exp.keys and \
                    ctx.get_parameter_source(name) == ParameterSource.DEFAULT_MAP:
                raise exp.error(exp.keys[name], exc.message) from None
            raise
        exp = ctx.meta.get(_META)
        for name, strings in (exp.keyed.items() if exp is not None else ()):
            if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
                ctx.params[name] = (*strings, *ctx.params[name])  # the command line's come later and win
        return rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MedkdError as exc:
            exp = ctx.meta.get(_META)
            key = _file_key(ctx, exp, str(exc)) if exp is not None else None
            if key is None:
                raise
            raise exp.error(key, str(exc)) from exc


def _file_key(ctx: click.Context, exp: ExperimentFile, message: str) -> str | None:
    """The file's key for the option ``message`` names by its flag, if the file gave the offending value."""
    params: Mapping[str, click.Parameter] = {p.name: p for p in ctx.command.params if p.name}
    for name, key in exp.keys.items():
        if not _flag_pattern(_long_flags(params[name])).search(message):
            continue
        source = ctx.get_parameter_source(name)
        if source == ParameterSource.DEFAULT_MAP:
            return key
        # Merged with the command line's: the flag's errors quote the offending string, then a colon.
        if name in exp.keyed and any(f" {s}:" in message or f" {s!r}:" in message for s in exp.keyed[name]):
            return key
    return None
