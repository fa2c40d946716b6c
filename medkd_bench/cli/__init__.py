"""The ``medkd-bench`` command line: one module per command group.

:mod:`.app` holds the click group, :mod:`.options` the shared options and
their parsing, :mod:`.run`, :mod:`.report`, :mod:`.datasets` and
:mod:`.plugins` the commands, :mod:`.executors` the choice of executor from
``run``'s flags, and :mod:`.main` the entry point that turns every
:class:`~medkd_bench.errors.MedkdError` into one line and exit code 2.
Plugins add commands through the ``register_commands`` hook. The CLI parses
and validates; the layers below it never spell a flag.
"""

from medkd_bench.cli.app import cli
from medkd_bench.cli.main import main

__all__ = ["cli", "main"]
