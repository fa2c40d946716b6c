"""Ctrl-C (and ``kill -INT``) as a request the run always honours, wherever it lands.

Python's own SIGINT handler raises KeyboardInterrupt in whatever the main thread is
running. Two things lose it:

- A process started with SIGINT ignored (a background job of a non-interactive
  shell, ``nohup ./run.sh &``) gets no handler at all, so ``kill -INT`` of the
  driver, the documented way to stop a run, did nothing outside a worker pool.
- An exception raised inside a weakref callback, a ``__del__`` or an import lock's
  cleanup is printed as "Exception ignored in ..." and dropped: a Ctrl-C that lands
  there was lost and the cell trained on to its last epoch (measured: 1 run in 12
  with the signal sent 0.2 s into a cell, inside importlib's module lock).

So the handler also records the request, and the training loop checks it between
batches (:func:`raise_if_interrupted`): a swallowed KeyboardInterrupt stops the
cell at its next batch instead of never.

The ``medkd-bench`` script starts in :mod:`medkd_bench.entry`, which enters
:func:`ctrl_c_raises` before it imports the command (torch with it): a process started
with SIGINT ignored used to ignore ``kill -INT`` for those seconds (measured before:
lost 1.5 s and 4 s after such a start, honoured 12 s after it). This module imports
nothing heavy for that reason.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED = "interrupted: finished cells are kept in the store; rerun to resume"

_requested = threading.Event()
_depth = 0  # how many ctrl_c_raises blocks are open: the entry's around the command's


def interrupt_requested() -> bool:
    """Whether SIGINT arrived under :func:`ctrl_c_raises` or :func:`ctrl_c_deferred`."""
    return _requested.is_set()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if a Ctrl-C arrived whose own exception was swallowed (or deferred)."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _raise(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def _record(signum: int, frame: FrameType | None) -> None:
    _requested.set()


@contextmanager
def _sigint_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGINT inside the block, the previous disposition after it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        # None: a handler not installed from Python, which cannot be put back; Python's own then
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


@contextmanager
def ctrl_c_raises() -> Iterator[None]:
    """For a whole command: SIGINT raises KeyboardInterrupt and is recorded, even if it was ignored on entry.

    The outermost block starts with no request and drops it when it ends (``main`` also runs
    inside test processes); a nested block (``main`` inside :mod:`medkd_bench.entry`'s) keeps a
    request made before it and honours it at once, since its exception may have been dropped
    inside the import that preceded it.
    """
    global _depth
    outermost = _depth == 0
    if outermost:
        _requested.clear()
    _depth += 1
    try:
        with _sigint_handled_by(_raise):
            raise_if_interrupted()
            yield
    finally:
        _depth -= 1
        if outermost:
            _requested.clear()


@contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """For a loop that polls :func:`interrupt_requested` (the worker pool's driver): SIGINT is only recorded.

    Raising wherever the driver's main thread happens to be could cut a store write or a pipe read in
    half. A KeyboardInterrupt leaving the block is the request honoured, so the record is dropped then;
    otherwise it stays for the command around the block to honour.
    """
    try:
        with _sigint_handled_by(_record):
            yield
    except KeyboardInterrupt:
        _requested.clear()
        raise
