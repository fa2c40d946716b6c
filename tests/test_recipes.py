"""The page's training recipes: read from each cell's stored config, one line per model and recipe."""

from types import SimpleNamespace

from medkd_bench.registry import load_registry
from medkd_bench.report.recipes import recipe_text, recipes
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.config_hash import hashed_train
from medkd_bench.run.run_options import RunOptions
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.specs import TrainSettings
from tests.helpers import embedded_dataset_config


def test_a_recipe_says_its_optimiser_stopping_rule_and_epoch_length():
    text = recipe_text(TrainSettings(epochs=100, batch_size=16, lr=2e-3, weight_decay=0.5, min_steps_per_epoch=48), 180)
    assert "lr 0.002, weight decay 0.5, batch 16" in text
    # 180 images in batches of 16 are 12 steps a pass: 4 passes make 48 steps; 400 steps of patience are 9 epochs
    assert "an epoch is 4 passes over its 180 images (48 steps)" in text
    assert "cap 100 epochs; patience 9 epochs" in text
    fixed = recipe_text(TrainSettings(epochs=3, early_stopping=False), 1080)
    assert "exactly 3 epochs with a cosine decay" in fixed and "one pass over its 1,080 images (34 steps)" in fixed


def _record(method: str, name: str, train: TrainSettings, n_train: int):
    return SimpleNamespace(method=method, config={"model": {"name": name, "train": hashed_train(train)}},
                           metrics={"n_train": n_train})


def test_a_student_trained_two_ways_names_who_used_which():
    """Cells of one student made with two recipes (a plugin's defaults changed between runs) say so, by method."""
    old, new = TrainSettings(weight_decay=0.05), TrainSettings(weight_decay=0.5, min_steps_per_epoch=48)
    lines = recipes([_record("teacher", "visformer-s", TrainSettings(), 1080), _record("label-only", "ofa-595", new, 180),
                     _record("kd", "ofa-595", old, 180), _record("dkd", "ofa-595", new, 180)])
    assert lines[0].startswith("visformer-s (teacher): ")
    assert sorted(line.split(":")[0] for line in lines[1:]) == ["ofa-595 (dkd, label-only)", "ofa-595 (kd)"]
    one = recipes([_record("label-only", "ofa-595", new, 180), _record("kd", "ofa-595", new, 180)])
    assert one == [f"ofa-595 (label-only and every method): {recipe_text(new, 180)}"]


def test_fixed_epochs_are_passes_whatever_the_spec_epoch_length():
    """``--epochs N`` trains N passes (a smoke run on 16 images stays 16 images an epoch); the default keeps the spec's."""
    registry = load_registry()
    spec = registry.students["ofa-595"]
    assert spec.train.min_steps_per_epoch > 0
    runtime = resolve_runtime("cpu", "off")
    assert CellComputer(registry, RunOptions(), runtime).settings(spec).min_steps_per_epoch == spec.train.min_steps_per_epoch
    fixed = CellComputer(registry, RunOptions(epochs=2), runtime).settings(spec)
    assert (fixed.epochs, fixed.early_stopping, fixed.min_steps_per_epoch) == (2, False, 0)


def test_a_page_mixing_two_recipes_of_its_student_says_its_gains_are_not_comparable(tmp_path):
    """A plugin's defaults changed between two runs into one store: the label-only cell of the new recipe and a
    distilled cell of the old one. The gain between them measures the recipe too, and the page says so."""
    import numpy as np

    from medkd_bench.report.leaderboard import render_all
    from medkd_bench.run.store import Store

    registry = load_registry()
    dataset = embedded_dataset_config(registry)
    labels = [i % 3 for i in range(60)]
    rng = np.random.default_rng(0)
    old, new = TrainSettings(weight_decay=0.05), TrainSettings(weight_decay=0.5, min_steps_per_epoch=48)

    def page(recipes_by_method: dict[str, TrainSettings], folder: str) -> str:
        with Store(tmp_path / folder / "runs.sqlite") as store:
            for method, train in recipes_by_method.items():
                teacher = "" if method == "label-only" else "visformer-s"
                name = "visformer-s" if method == "teacher" else "ofa-595"
                preds = [int(y if rng.random() < 0.7 else (y + 1) % 3) for y in labels]
                metrics = {"accuracy": float(np.mean(np.equal(preds, labels))), "macro_f1": 0.7, "n_test": 60,
                           "n_train": 180, "stopped": "plateau", "epochs_run": 20, "best_epoch": 12,
                           "test_labels": labels, "test_predictions": preds, "per_class_f1": {c: 0.7 for c in registry.datasets["synthetic-cxr"].classes}}
                config = {"dataset": dataset, "model": {"name": name, "init": "random", "train": hashed_train(train)}}
                store.start(method, "synthetic-cxr", teacher, "" if method == "teacher" else "ofa-595", method, 0,
                            config)
                store.finish(method, metrics, {"train_s": 5.0}, {})
            return render_all(registry, store, tmp_path / folder / "boards", resamples=50)[0].read_text()

    mixed = page({"teacher": TrainSettings(), "label-only": new, "kd": old, "dkd": new}, "mixed")
    assert "**Not comparable as it stands**: its cells were trained with 2 different recipes" in mixed
    assert "ofa-595 (dkd, label-only): " in mixed and "ofa-595 (kd): " in mixed
    same = page({"teacher": TrainSettings(), "label-only": new, "kd": new}, "same")
    assert "Not comparable" not in same and "ofa-595 (label-only and every method): " in same
