"""The ``medkd-bench`` entry point: built-in commands, plugins' commands, and one-line errors.

Every user mistake surfaces as :class:`MedkdError`; :func:`main` prints its
one-line message and exits with code 2. A run whose cells partly failed exits
with 1 after recording every error in the store.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click
from rich.markup import escape

# The command modules register themselves on ``cli`` when imported.
from medkd_bench.cli import datasets, plugins, report, run  # noqa: F401
from medkd_bench.cli.app import cli, err_console, is_debug, set_debug
from medkd_bench.errors import MedkdError, one_line
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.blas import one_blas_thread
from medkd_bench.runtime.interrupts import INTERRUPTED, ctrl_c_raises
from medkd_bench.runtime.quiet import quiet_dependency_warnings


def add_plugin_commands() -> None:
    """Let installed plugins add their commands (``register_commands``) before click parses the line."""
    from medkd_bench.registry import make_plugin_manager

    pm = make_plugin_manager()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:
            raise MedkdError(f"plugin {impl.plugin_name!r} failed in register_commands: "
                             f"{type(exc).__name__}: {exc}") from exc


def _error(text: str) -> None:
    """One line on stderr; with ``--debug``, the traceback of the exception being handled first."""
    if is_debug():
        err_console.print(escape(traceback.format_exc()), highlight=False)
    err_console.print(f"[red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> None:
    quiet_dependency_warnings()
    keep_freed_memory()  # before torch allocates anything
    one_blas_thread()
    set_debug(False)
    with ctrl_c_raises():  # kill -INT stops a run started with SIGINT ignored too (nohup ./run.sh &)
        _main(argv)


def _main(argv: Sequence[str] | None) -> None:
    try:
        add_plugin_commands()
        cli.main(args=list(argv) if argv is not None else None, prog_name="medkd-bench", standalone_mode=False)
    except MedkdError as exc:
        _error(str(exc))
        sys.exit(2)
    except click.UsageError as exc:  # a bad flag or value: one line naming it, as for every other bad input
        _error(exc.format_message())
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED)
        sys.exit(130)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C inside a command into Abort
        err_console.print(INTERRUPTED if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a defect, not bad input: still one line, the traceback behind --debug
        _error(f"internal error: {one_line(exc)} (rerun with --debug for the traceback)")
        sys.exit(1)
