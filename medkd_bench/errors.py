"""One exception type the CLI turns into a one-line message and exit code 2.

Everything a user can get wrong (a plugin name, a path, an option) raises
:class:`MedkdError` with a message that names the culprit, so the CLI never
dumps a traceback for bad input.
"""


class MedkdError(Exception):
    """A user-facing error: the message names the file, plugin or option at fault."""
