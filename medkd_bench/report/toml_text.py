"""A small TOML writer for the value types experiment files use.

No TOML writer is a dependency (tomllib only reads), and the leaderboards'
provenance block needs to print an experiment file that ``run --config``
reads back exactly. So this writes the few types such a file holds: strings,
integers, floats, booleans, arrays of those, and tables (nested tables get
dotted headers). Strings are TOML basic strings with every character that
TOML forbids raw escaped; tests/test_config_file.py checks the round trip
through tomllib, hostile strings included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
#: The short escapes TOML 1.0 defines; every other control character becomes \\uXXXX.
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters (U+0000-001F, U+007F)
    escaped; other characters, non-ASCII included, kept as they are (the file is UTF-8)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate: no UTF-8 form, and TOML escapes only scalar values
            raise ValueError(f"cannot write {text!r} as TOML: it holds a lone surrogate")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A bare key where TOML allows one (``n_train``, ``synthetic-cxr``), else a quoted one."""
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    """An inline TOML value: a string, an integer, a float, a boolean or an array of those."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-tripping form: 0.1, 1e-05, 1e+16 are all TOML floats
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as a TOML value")


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document: its plain keys first, then one ``[table]`` per mapping, nested ones dotted."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    plain = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if path and (plain or not tables):  # an empty table still gets its header, so it reads back as {}
        lines += ["", "[" + ".".join(toml_key(p) for p in path) + "]"]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in plain.items()]
    for k, v in tables.items():
        _table(v, [*path, k], lines)
