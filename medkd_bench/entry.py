"""The ``medkd-bench`` console script and ``python -m medkd_bench``: Ctrl-C handled from the first moment.

The command's modules import torch, which takes seconds (5-7 s on a busy 2-core machine). A
process started with SIGINT ignored (``nohup ./run.sh &``, a background job of a script)
ignored ``kill -INT`` for all of that time, because the handler was installed only when
:func:`medkd_bench.cli.main.main` began. Here it is installed first: this module and
:mod:`medkd_bench.runtime.interrupts` import nothing heavy, and neither does the package's
``__init__`` (its public names are imported on first use).
"""

from __future__ import annotations

import sys

from medkd_bench.runtime.interrupts import INTERRUPTED, ctrl_c_raises


def main() -> None:
    """Import the command under the Ctrl-C handler, then run it; exit 130 if interrupted before it ran."""
    with ctrl_c_raises():
        try:
            from medkd_bench.cli.main import main as run_command
        except KeyboardInterrupt:
            _interrupted()
        try:
            run_command()  # its own handler nests inside this one and honours a request made during the import
        except KeyboardInterrupt:  # landed between the import and the command's own handling
            _interrupted()


def _interrupted() -> None:
    print(INTERRUPTED, file=sys.stderr)
    sys.exit(130)
