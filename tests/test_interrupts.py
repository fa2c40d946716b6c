"""Ctrl-C and ``kill -INT`` stop a run in every phase (medkd_bench.runtime.interrupts).

The signal is raised from inside the run (at its first validation pass, where the cell is surely
training), so the test does not race a subprocess's start-up. Pools are covered in
``tests/test_pool_executor.py``.
"""

import signal

import pytest

from medkd_bench.run.store import Store
from medkd_bench.runtime.interrupts import ctrl_c_raises, interrupt_requested
from medkd_bench.train import loop
from tests.helpers import QUICK


class _SwallowsCtrlC:
    """Ctrl-C landing in a ``__del__`` (or a weakref callback, or importlib's module-lock cleanup):
    Python prints "Exception ignored in ..." and drops the KeyboardInterrupt."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def _validations_calling(monkeypatch, action) -> list[int]:
    """Run ``action`` at the first validation pass of the first cell; return the list of passes seen."""
    passes: list[int] = []
    real = loop.evaluate_accuracy

    def validation(*args, **kwargs):
        passes.append(1)
        if len(passes) == 1:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_accuracy", validation)
    return passes


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_kill_int_stops_a_run_started_with_sigint_ignored_even_when_python_drops_its_keyboard_interrupt(
        run_cli, tmp_path, monkeypatch):
    """Two ways a ``kill -INT`` of the driver, the documented way to stop a run, was lost with ``--jobs 1``:

    - A background job of a script (``nohup ./run.sh &``) starts with SIGINT ignored, and Python then
      installs no handler: the signal did nothing wherever no worker pool ran.
    - Seen 1 run in 12 with SIGINT sent 0.2 s into a cell: the KeyboardInterrupt was raised inside
      importlib's module-lock cleanup, printed as "Exception ignored" and dropped.

    Either way the cells trained on to their last epoch and the run ended 0. Here both at once: SIGINT
    ignored on entry, and the signal raised inside a ``__del__``. The handler now records the request and
    the training loop checks it between batches.
    """
    passes = _validations_calling(monkeypatch, lambda: _SwallowsCtrlC())
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = run_cli([*QUICK, "--epochs", "3", "--work-dir", str(tmp_path / "work"),
                          "--leaderboard-dir", str(tmp_path / "boards")])
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the command gives the disposition back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130, result.err
    assert "interrupted: finished cells are kept in the store; rerun to resume" in result.err
    with Store(tmp_path / "work" / "runs.sqlite") as store:
        assert [(c.method, c.status, c.error) for c in store.cells()] == [("teacher", "failed", "interrupted")]
    assert len(passes) == 1  # stopped at the first batch of epoch 2, before its validation
    assert not interrupt_requested()  # the request was that command's: the next one starts clean


def test_a_swallowed_ctrl_c_is_remembered_until_the_command_returns():
    with ctrl_c_raises():
        _SwallowsCtrlC()
        assert interrupt_requested()
    assert not interrupt_requested()
