"""An interrupted cell resumes at its last training snapshot and ends with the weights of an uninterrupted one.

Real training throughout (a small network with dropout and batch norm, so
every generator and buffer the loop touches matters); the interruption is a
KeyboardInterrupt raised from the epoch callback, as Ctrl-C or a session's end
would stop it between two steps of the loop.
"""

from __future__ import annotations

import errno

import pytest
import torch
from torch import nn

import medkd_bench.train.loop as loop
from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.specs import TrainSettings
from medkd_bench.train.loop import fit
from medkd_bench.train.snapshots import Snapshots
from tests.helpers import DropoutNet


@pytest.fixture(scope="module")
def data():
    return prepare(load_registry().get("dataset", "synthetic-cxr"), 32, None, {"n_train": 24, "n_val": 9, "n_test": 6})


FIXED = TrainSettings(epochs=6, batch_size=8, warmup_epochs=1.0, early_stopping=False)
#: Under early stopping: patience 2 from epoch 1, so the cool-down starts mid-run (on a real curve or a scripted one).
PLATEAU = TrainSettings(epochs=30, batch_size=8, warmup_epochs=1.0, patience=2, min_epochs=0, patience_steps=0)


def _train(data, settings, snapshots=None, stop_after=None, seed=3):
    torch.manual_seed(seed)  # the initial weights, as the computer seeds them
    model = DropoutNet(data.num_classes)

    def on_epoch(epoch, _epochs, _row):
        if epoch == stop_after:
            raise KeyboardInterrupt

    result = fit(model, data, settings, resolve_runtime("cpu", "off"), seed=seed, snapshots=snapshots,
                 on_epoch=on_epoch)
    return model, result


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _interrupted_then_resumed(data, settings, tmp_path, stop_after):
    snapshots = Snapshots(tmp_path / "cell.pt", key="cell", every_s=0)
    with pytest.raises(KeyboardInterrupt):
        _train(data, settings, snapshots, stop_after=stop_after)
    assert snapshots.path.is_file()
    torch.manual_seed(12345)  # whatever ran in between: the snapshot carries every generator's state
    return _train(data, settings, Snapshots(tmp_path / "cell.pt", key="cell", every_s=0)), snapshots


@pytest.mark.parametrize("settings", [FIXED, PLATEAU], ids=["fixed-epochs", "until-plateau"])
def test_a_resumed_cell_ends_with_the_weights_and_history_of_an_uninterrupted_one(data, settings, tmp_path):
    whole, whole_result = _train(data, settings)
    stop_after = 3 if settings is FIXED else max(2, whole_result.epochs_run - 2)
    (resumed, result), snapshots = _interrupted_then_resumed(data, settings, tmp_path, stop_after)
    assert result.resumed_from_epoch == stop_after - 1  # the snapshot after the epoch before the interruption
    assert result.earlier_seconds > 0 and whole_result.earlier_seconds == 0  # the interrupted run's time counts
    assert result.earlier_cpu_seconds > 0 and whole_result.earlier_cpu_seconds == 0  # and its CPU time
    assert result.train_cpu_seconds > 0 and result.train_seconds > 0  # the snapshot's epochs count in both
    assert result.history == whole_result.history
    assert (result.best_epoch, result.stopped, result.epochs_run) == (
        whole_result.best_epoch, whole_result.stopped, whole_result.epochs_run)
    assert _same(resumed, whole)
    assert not snapshots.path.exists()  # a finished cell leaves no snapshot behind


def test_a_pause_in_training_counts_in_its_wall_time_and_not_in_its_cpu_time(data, monkeypatch):
    """A run stopped (``SIGSTOP``) or descheduled mid-epoch: ``train_seconds`` grows, ``train_cpu_seconds`` not.

    The reference run is paused for measurements and CI; its cells' wall times then overstate
    their cost, and CPU time is the figure a pause cannot inflate. A sleep stands in for the pause.
    """
    _, quiet = _train(data, FIXED)
    step, calls = loop.Trainer.step, {"n": 0}

    def paused_step(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            import time
            time.sleep(1.5)
        return step(self, *args)

    monkeypatch.setattr(loop.Trainer, "step", paused_step)
    _, paused = _train(data, FIXED)
    assert paused.history == quiet.history  # the same training
    assert paused.train_seconds > quiet.train_seconds + 1.4
    assert 0 < paused.train_cpu_seconds < quiet.train_cpu_seconds + 0.7


def test_the_early_stopping_state_survives_a_snapshot(data, tmp_path, monkeypatch):
    """Interrupted after the cool-down began: the resumed run cools down on the same schedule and stops on time."""
    curve = [0.2, 0.4, 0.6, 0.5, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    calls = {"n": 0}

    def scripted(*_args, **_kwargs):
        calls["n"] += 1
        return curve[calls["n"] - 1]

    monkeypatch.setattr(loop, "evaluate_accuracy", scripted)
    whole, whole_result = _train(data, PLATEAU)
    assert whole_result.stopped == "plateau" and whole_result.epochs_run == 6  # best at 3, patience 2, cool-down 1
    calls["n"] = 0
    snapshots = Snapshots(tmp_path / "cell.pt", key="cell", every_s=0)
    with pytest.raises(KeyboardInterrupt):
        _train(data, PLATEAU, snapshots, stop_after=6)  # epoch 5 began the cool-down; 6 is its last
    calls["n"] = 5  # the resumed run validates epoch 6 next
    resumed, result = _train(data, PLATEAU, Snapshots(tmp_path / "cell.pt", key="cell", every_s=0))
    assert (result.resumed_from_epoch, result.epochs_run, result.stopped) == (5, 6, "plateau")
    assert result.best_epoch == whole_result.best_epoch == 3 and _same(resumed, whole)


def test_a_damaged_snapshot_is_discarded_with_a_warning_and_the_cell_trains_from_epoch_one(data, tmp_path, capsys):
    whole, _ = _train(data, FIXED)
    snapshots = Snapshots(tmp_path / "cell.pt", key="cell", every_s=0)
    with pytest.raises(KeyboardInterrupt):
        _train(data, FIXED, snapshots, stop_after=4)
    raw = bytearray(snapshots.path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit in the middle of the weights
    snapshots.path.write_bytes(bytes(raw))
    resumed, result = _train(data, FIXED, Snapshots(tmp_path / "cell.pt", key="cell", every_s=0))
    assert result.resumed_from_epoch == 0 and _same(resumed, whole)
    err = capsys.readouterr().err
    assert f"training snapshot {snapshots.path} is damaged" in err and "training the cell from epoch 1" in err


def test_a_writer_killed_mid_snapshot_leaves_nothing_behind_for_the_next_run(data, tmp_path):
    snapshots = Snapshots(tmp_path / "cell.pt", key="cell", every_s=0)
    with pytest.raises(KeyboardInterrupt):
        _train(data, FIXED, snapshots, stop_after=3)
    leftover = tmp_path / ".cell.pt.host-4242-1.tmp"  # what SIGKILL during torch.save leaves
    leftover.write_bytes(b"half a snapshot")
    _, result = _train(data, FIXED, Snapshots(tmp_path / "cell.pt", key="cell", every_s=0))
    assert result.resumed_from_epoch == 2 and not leftover.exists()


def test_another_cells_snapshot_is_never_resumed(data, tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        _train(data, FIXED, Snapshots(tmp_path / "cell.pt", key="other-cell", every_s=0), stop_after=3)
    whole, _ = _train(data, FIXED)
    resumed, result = _train(data, FIXED, Snapshots(tmp_path / "cell.pt", key="cell", every_s=0))
    assert result.resumed_from_epoch == 0 and _same(resumed, whole)
    assert "not a format-1 snapshot of cell cell" in capsys.readouterr().err


def test_a_full_disk_costs_the_snapshot_not_the_cell(data, tmp_path, monkeypatch, capsys):
    whole, _ = _train(data, FIXED)

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    snapshots = Snapshots(tmp_path / "cell.pt", key="cell", every_s=0)
    trained, result = _train(data, FIXED, snapshots)
    assert result.epochs_run == 6 and _same(trained, whole)
    assert not list(tmp_path.iterdir())  # no half-written snapshot or temporary file left behind
    err = capsys.readouterr().err
    assert err.count("could not be written (OSError: [Errno 28] No space left on device): training goes on "
                     "without it") == 1  # once, not once per epoch


def test_snapshots_wait_the_interval_between_them(data, tmp_path, monkeypatch):
    written: list[int] = []
    monkeypatch.setattr(Snapshots, "save", lambda self, state: written.append(len(state["result"]["history"])))
    _train(data, FIXED, Snapshots(tmp_path / "cell.pt", key="cell", every_s=3600))
    assert written == []  # six quick epochs: never an hour apart
    _train(data, FIXED, Snapshots(tmp_path / "cell.pt", key="cell", every_s=0))
    assert written == [1, 2, 3, 4, 5]  # none after the last epoch: the cell is done


@pytest.mark.slow
def test_a_run_stopped_mid_cell_resumes_it_and_stores_what_an_uninterrupted_run_stores(run_cli, tmp_path, monkeypatch):
    """Through the run: Ctrl-C in a distilled cell's second epoch, a rerun, the same checkpoint as a run never stopped."""
    import medkd_bench.run.computer as computer_module
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.store import Store
    from tests.helpers import TINY_DATA

    args = ["run", "--datasets", "synthetic-cxr", "--teachers", "visformer-s", "--students", "ofa-595",
            "--methods", "kd", "--explainers", "grad-cam", *TINY_DATA, "--epochs", "3"]
    original_fit, original_snapshots = computer_module.fit, CellComputer.snapshots
    monkeypatch.setattr(CellComputer, "snapshots",  # one after every epoch, not every ten minutes
                        lambda self, h: Snapshots(original_snapshots(self, h).path, key=h, every_s=0))

    def kd_cells(work):
        with Store(work / "runs.sqlite", readonly=True) as store:
            return [c for c in store.cells() if c.method == "kd"]

    whole = tmp_path / "whole"
    assert run_cli([*args, "--work-dir", str(whole / "work"), "--leaderboard-dir", str(whole / "boards")]).exit_code == 0

    def stopped_in_epoch_2(*fit_args, distill=None, on_epoch=None, **kwargs):
        def stop(epoch, epochs, row):
            if epoch == 2:
                raise KeyboardInterrupt
            if on_epoch is not None:
                on_epoch(epoch, epochs, row)

        return original_fit(*fit_args, distill=distill, on_epoch=stop if distill is not None else on_epoch, **kwargs)

    stopped = tmp_path / "stopped"
    stopped_args = [*args, "--work-dir", str(stopped / "work"), "--leaderboard-dir", str(stopped / "boards")]
    monkeypatch.setattr(computer_module, "fit", stopped_in_epoch_2)
    assert run_cli(stopped_args).exit_code == 130
    assert len(list((stopped / "work" / "snapshots").glob("*.pt"))) == 1  # the kd cell's
    monkeypatch.setattr(computer_module, "fit", original_fit)
    assert run_cli(stopped_args).exit_code == 0
    (resumed,), (reference,) = kd_cells(stopped / "work"), kd_cells(whole / "work")
    # Stopped as epoch 2 was reported, before its snapshot: epoch 1 is kept, 2 and 3 trained again.
    assert resumed.metrics["resumed_from_epoch"] == 1 and "resumed_from_epoch" not in reference.metrics
    assert resumed.hash == reference.hash
    assert resumed.artifacts["checkpoint_sha256"] == reference.artifacts["checkpoint_sha256"]
    assert resumed.metrics["history"] == reference.metrics["history"]
    assert not list((stopped / "work" / "snapshots").glob("*.pt"))
