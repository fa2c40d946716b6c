"""One exception type the CLI turns into a one-line message and exit code 2.

Everything a user can get wrong (a plugin name, a path, an option) raises
:class:`MedkdError` with a message that names the culprit, so the CLI never
dumps a traceback for bad input.
"""


class MedkdError(Exception):
    """A user-facing error: the message names the file, plugin or option at fault."""


def one_line(exc: BaseException) -> str:
    """The first line of an error, prefixed by its type unless it is already a user-facing message."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, MedkdError):
        return first
    return f"{type(exc).__name__}: {first}".strip().rstrip(":")
