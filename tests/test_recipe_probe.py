"""benchmarks/recipe_probe.py: recipes are compared by training exactly what `run` trains, on validation only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medkd_bench.run.store import Store

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: tests/helpers.py's TINY_DATA for synthetic-cxr, as probe() takes them.
TINY_CXR = {"n_train": 24, "n_val": 9, "n_test": 9, "teacher_train_factor": 3}


@pytest.fixture
def recipe_probe(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import recipe_probe

    return recipe_probe


def test_without_overrides_the_probe_trains_the_runs_own_cell(recipe_probe, quick_run):
    with Store(quick_run / "work" / "runs.sqlite") as store:
        stored = {c.method: c for c in store.cells()}
    # The cells' own threads (float rounding depends on them): "x86_64 CPU, 2 threads, cpu (...)".
    threads = int(re.search(r"(\d+) threads?", stored["label-only"].metrics["machine"]).group(1))
    common = {"dataset_options": TINY_CXR, "img_size": 32, "epochs": 1, "work_dir": quick_run / "work",
              "amp": "auto", "threads": threads, "say": lambda line: None}
    for model, method in (("ofa-595", None), ("ofa-595", "kd"), ("visformer-s", None)):
        cell = stored[method or ("teacher" if model == "visformer-s" else "label-only")]
        out = recipe_probe.probe("synthetic-cxr", model, method, teacher="visformer-s" if method else "", **common)
        assert out["run_cell_hash"] == cell.hash, (model, method)
        assert out["val_curve"] == [round(row["val_accuracy"], 4) for row in cell.metrics["history"]], (model, method)


@pytest.mark.slow
def test_an_override_changes_the_recipe_and_names_no_run_cell(recipe_probe, tmp_path):
    lines: list[str] = []
    out = recipe_probe.probe("synthetic-cxr", "ofa-595", train={"weight_decay": 0.5, "lr": 1e-3},
                             dataset_options=TINY_CXR, img_size=32, epochs=2, work_dir=tmp_path, say=lines.append)
    assert out["run_cell_hash"] is None and out["epochs_run"] == 2 and len(out["val_curve"]) == 2
    assert "weight_decay=0.5" in lines[0] and "lr=0.001" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["epoch 1", "epoch 2"]


def test_an_unknown_field_is_a_one_line_usage_error(recipe_probe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe_probe.main(["synthetic-cxr", "ofa-595", "--train", '{"weight_decai": 0.5}'])
    assert exit_info.value.code == 2
    assert "--train: weight_decai: not a TrainSettings field" in capsys.readouterr().err
