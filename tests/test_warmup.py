"""Warm-up before timed training: one-time costs timed on their own, the trained weights unchanged."""

import functools
import sqlite3

import pytest
import torch

from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.specs import TrainSettings
from medkd_bench.train.loop import fit
from medkd_bench.train.warmup import epoch_batch_sizes
from tests.helpers import TINY_DATA, DropoutNet, assert_one_line_error


@pytest.fixture(scope="module")
def tiny_data():
    spec = load_registry().get("dataset", "synthetic-cxr")
    return prepare(spec, 32, None, {"n_train": 21, "n_val": 6, "n_test": 6})


def _train(data, warm: bool):
    torch.manual_seed(0)
    model = DropoutNet(data.num_classes)
    result = fit(model, data, TrainSettings(epochs=2, batch_size=8), resolve_runtime("cpu", "off"), seed=0, warm=warm)
    return model.state_dict(), result


def test_warm_up_is_timed_apart_and_leaves_training_bit_for_bit_unchanged(tiny_data):
    cold_state, cold = _train(tiny_data, warm=False)
    warm_state, warm = _train(tiny_data, warm=True)
    assert cold.warmup_seconds == 0.0 and warm.warmup_seconds > 0.0
    assert [r["loss"] for r in warm.history] == [r["loss"] for r in cold.history]
    assert cold_state.keys() == warm_state.keys()
    for key in cold_state:  # weights, batch-norm statistics and their step counter
        assert torch.equal(cold_state[key], warm_state[key]), key


def test_an_epoch_s_batch_shapes_are_each_warmed():
    assert epoch_batch_sizes(21, 8) == [8, 5]  # two full batches and the remainder
    assert epoch_batch_sizes(16, 8) == [8]
    assert epoch_batch_sizes(17, 8) == [8]  # a lone last sample is dropped by train_batches
    assert epoch_batch_sizes(5, 8) == [5]


@pytest.mark.slow
def test_warm_cells_train_as_cold_ones_for_every_kind_of_cell(run_cli, tmp_path, monkeypatch):
    """Teacher, label-only and a feature method (FitNets' regressor is restored too; logits methods touch less):
    the same checkpoints with the warm-up forced on as without it, and the warm-up stored as ``warmup_s``."""
    import medkd_bench.run.computer as computer

    args = ["run", "--teachers", "visformer-s", "--students", "ofa-595", "--datasets", "synthetic-cxr",
            "--methods", "fitnet", "--explainers", "grad-cam", *TINY_DATA]

    def checkpoints(work):
        with sqlite3.connect(work / "runs.sqlite") as db:
            rows = db.execute("SELECT method, artifacts, timings FROM cells ORDER BY method").fetchall()
        import json

        return {m: json.loads(a)["checkpoint_sha256"] for m, a, _ in rows}, {m: json.loads(t) for m, _, t in rows}

    cold = run_cli([*args, "--work-dir", str(tmp_path / "cold"), "--leaderboard-dir", str(tmp_path / "b1")])
    monkeypatch.setattr(computer, "fit", functools.partial(computer.fit, warm=True))
    warm = run_cli([*args, "--work-dir", str(tmp_path / "warm"), "--leaderboard-dir", str(tmp_path / "b2")])
    assert cold.exit_code == 0 and warm.exit_code == 0, warm.err
    cold_sha, cold_timings = checkpoints(tmp_path / "cold")
    warm_sha, warm_timings = checkpoints(tmp_path / "warm")
    assert set(cold_sha) == {"teacher", "label-only", "fitnet"}
    assert warm_sha == cold_sha
    assert all(t["warmup_s"] == 0.0 for t in cold_timings.values())  # on CPU, eager: nothing to warm
    assert all(t["warmup_s"] > 0.0 for t in warm_timings.values())


def test_compile_runs_the_training_step_through_torch_compile_and_is_a_setting(tiny_data):
    """``--compile``: the step calls the compiled wrapper, warm-up (compilation) is timed apart, weights stay
    a plain module's (checkpoints keep their keys), and the precision string that hashes the cell says so."""
    import torch._dynamo

    from medkd_bench.run.run_options import RunOptions, result_settings

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = DropoutNet(tiny_data.num_classes)
    runtime = resolve_runtime("cpu", "off", compile_mode="default")
    result = fit(model, tiny_data, TrainSettings(epochs=1, batch_size=8), runtime, seed=0)
    assert type(result.forward).__name__ == "OptimizedModule" and result.forward._orig_mod is model
    assert result.warmup_seconds > 0 and list(model.state_dict()) == list(DropoutNet(3).state_dict())
    assert runtime.precision == "fp32+compile:default"
    assert result_settings(RunOptions(compile_mode="reduce-overhead")) == {"compile": "reduce-overhead"}


def test_a_missing_compiler_is_one_line_before_any_work(run_cli, tmp_path, monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    torch._dynamo.reset()
    result = run_cli(["run", "--matrix", "quick", "--compile", "default", *TINY_DATA, "--work-dir", str(tmp_path / "w")])
    line = assert_one_line_error(result)
    assert line.startswith("error: --compile default: torch.compile cannot run on cpu here:"), line
    assert not (tmp_path / "w").exists()
    bad = run_cli(["run", "--matrix", "quick", "--compile", "fast", *TINY_DATA, "--work-dir", str(tmp_path / "w")])
    assert_one_line_error(bad, "--compile fast: expected one of off, default")
