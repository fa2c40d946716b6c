"""Training to convergence: early stopping on a validation plateau, a fixed --epochs, fixed teachers."""

import pytest
import torch
from torch import nn

import medkd_bench.train.loop as loop
from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.plan import plan
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.specs import TrainSettings
from medkd_bench.train.loop import fit
from medkd_bench.train.schedule import PlateauStop, cooldown_epochs


def _scripted(curve, **settings):
    """Feed a scripted validation curve to the stopping rule; the epochs it ran and why it stopped."""
    rule = PlateauStop(max_epochs=settings.pop("max_epochs", 50), steps_per_epoch=settings.pop("steps_per_epoch", 10),
                       warmup_epochs=1.0, min_ratio=0.01, patience=settings.pop("patience", 3),
                       min_delta=settings.pop("min_delta", 0.0), patience_steps=settings.pop("patience_steps", 0))
    for epoch, acc in enumerate(curve, 1):
        rule.end_epoch(epoch, acc)
        if rule.done:
            return epoch, rule
    raise AssertionError(f"did not stop within {len(curve)} scripted epochs")


def test_stops_on_a_plateau_after_patience_and_a_cool_down_and_not_before():
    # Improves every epoch up to epoch 10, then flat: 3 epochs of patience (11-13) start a cool-down of
    # ceil(0.2 * 13) = 3 epochs (14-16), then it stops.
    curve = [0.3 + 0.05 * e for e in range(10)] + [0.75] * 30
    epochs, rule = _scripted(curve)
    assert rule.reason == "plateau" and rule.cooldown == (14, 16) and epochs == 16
    # A late gain resets the patience clock: the same curve with a new best at epoch 12 stops 2 epochs later.
    late = curve[:11] + [0.8] + [0.8] * 30
    epochs_late, _ = _scripted(late)
    assert epochs_late == 12 + 3 + cooldown_epochs(15, 0.2)


@pytest.mark.parametrize("patience,flat_from", [(3, 10), (12, 18), (8, 33), (9, 47)])
def test_a_page_finds_the_plateau_epoch_the_stopping_rule_chose_from_the_epochs_run(patience, flat_from):
    """The pages say where the plateau was (a best epoch near the last is the cool-down's, not a model still
    learning): read back from the epochs run and the recipe's cool-down fraction, it is the rule's own."""
    from medkd_bench.report.convergence import convergence_text, plateau_epoch
    from medkd_bench.run.records import CellRecord

    curve = [0.3 + 0.01 * e for e in range(flat_from)] + [0.3 + 0.01 * flat_from] * 100
    epochs, rule = _scripted(curve, patience=patience, max_epochs=120)
    assert rule.reason == "plateau"

    def record(stopped, fraction=0.2):
        return CellRecord("h", "d", "t", "", "teacher", 0, "done",
                          {"model": {"train": {"cooldown_fraction": fraction}}},
                          {"stopped": stopped, "epochs_run": epochs, "best_epoch": epochs - 1}, {}, {}, None, None, None)

    assert plateau_epoch(record("plateau")) == rule.cooldown[0] - 1
    assert convergence_text([record("plateau")]) == (
        f"converged: stopped on a validation plateau (plateau at epoch {rule.cooldown[0] - 1}; epochs run {epochs}, "
        f"the last {epochs - rule.cooldown[0] + 1} cooling the learning rate down; best epoch {epochs - 1})")
    assert plateau_epoch(record("epoch-cap")) is None and plateau_epoch(record("plateau", fraction=None)) is None
    assert "plateau at" not in convergence_text([record("plateau"), record("plateau", fraction=None)])


def test_a_gain_below_min_delta_does_not_count_as_improving():
    curve = [0.5, 0.6, 0.7, 0.701, 0.702, 0.703] + [0.703] * 20
    with_delta, rule = _scripted(curve, min_delta=0.005)
    without, _ = _scripted(curve, min_delta=0.0)
    assert rule.last_improved == 3 and without > with_delta


def test_a_slow_start_is_not_a_plateau():
    """Best at epoch 1 by luck, near chance until epoch 9, then learning: no plateau before min_epochs."""
    curve = [0.39] + [0.35] * 8 + [0.4 + 0.04 * e for e in range(10)] + [0.8] * 30
    rule = PlateauStop(max_epochs=60, steps_per_epoch=10, warmup_epochs=1.0, min_ratio=0.01, patience=5,
                       min_delta=0.005, min_epochs=10)
    for epoch, acc in enumerate(curve, 1):
        rule.end_epoch(epoch, acc)
        assert rule.cooldown is None or epoch >= 10, epoch
        if rule.done:
            break
    assert rule.reason == "plateau" and rule.last_improved == 20 and rule.cooldown == (26, 30)
    # Without it, the same curve stops at epoch 8 (patience from epoch 1, a 2-epoch cool-down), at chance.
    epochs, early = _scripted(curve, patience=5, min_delta=0.005)
    assert early.cooldown == (7, 8) and epochs == 8


def test_a_model_still_improving_cools_down_into_its_epoch_cap():
    curve = [0.01 * e for e in range(1, 100)]  # improves every epoch
    epochs, rule = _scripted(curve, max_epochs=20)
    # The cool-down is planned once 20% of the epochs run would reach the cap: after epoch 16 (ceil(3.2) = 4).
    assert epochs == 20 and rule.reason == "epoch-cap" and rule.cooldown == (17, 20)


def test_learning_rate_warms_up_holds_then_cools_down_to_the_floor():
    rule = PlateauStop(max_epochs=50, steps_per_epoch=10, warmup_epochs=1.0, min_ratio=0.01, patience=2, min_delta=0.0)
    assert rule.factor(0) == pytest.approx(0.1) and rule.factor(9) == pytest.approx(1.0)
    assert rule.factor(55) == 1.0  # constant while no plateau has been seen
    for epoch, acc in enumerate([0.5, 0.6, 0.6, 0.6], 1):
        rule.end_epoch(epoch, acc)
    assert rule.cooldown == (5, 5)  # ceil(0.2 * 4) = 1 epoch of cool-down
    assert rule.factor(40) < 1.0 and rule.factor(49) == pytest.approx(0.01)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny_data():
    spec = load_registry().get("dataset", "synthetic-cxr")
    return prepare(spec, 32, None, {"n_train": 16, "n_val": 6, "n_test": 6})


def test_fit_stops_on_the_scripted_plateau_and_keeps_the_best_epoch(tiny_data, monkeypatch):
    """Real training, a scripted validation curve: fit() runs exactly the epochs the rule asks for."""
    curve = iter([0.2, 0.4, 0.6, 0.5, 0.6, 0.55] + [0.1] * 50)
    monkeypatch.setattr(loop, "evaluate_accuracy", lambda *args, **kwargs: next(curve))
    settings = TrainSettings(epochs=40, batch_size=8, patience=3, warmup_epochs=1.0, min_epochs=0, patience_steps=0)
    result = fit(TinyNet(tiny_data.num_classes), tiny_data, settings, resolve_runtime("cpu", "off"), seed=0)
    # Best 0.6 at epoch 3 (epoch 5's equal score is no gain); patience ends at epoch 6; cool-down ceil(1.2) = 2.
    assert result.stopped == "plateau" and result.epochs_run == 8
    assert result.best_epoch == 5 and result.best_val_accuracy == 0.6  # ties keep the later weights, as before


def test_patience_lasts_at_least_patience_steps_optimiser_steps(tiny_data, monkeypatch):
    """A small training set's epochs are few steps: its patience is stretched to the same training, not the same epochs."""
    flat = [0.6] + [0.6] * 60
    small, _ = _scripted(flat, patience=8, steps_per_epoch=12, patience_steps=400)  # 34 epochs of 12 steps
    large, _ = _scripted(flat, patience=8, steps_per_epoch=34, patience_steps=400)  # 12 epochs of 34 steps
    huge, _ = _scripted(flat, patience=8, steps_per_epoch=500, patience_steps=400)  # the epochs count: 8
    # Best at epoch 1; the cool-down (20% of the epochs run) follows the plateau.
    assert (small, large, huge) == (1 + 34 + 7, 1 + 12 + 3, 1 + 8 + 2)
    # Through fit: 16 images in batches of 8 are 2 steps an epoch, so 10 steps of patience are 5 epochs, not 3.
    curve = iter([0.2, 0.4, 0.6] + [0.5] * 50)
    monkeypatch.setattr(loop, "evaluate_accuracy", lambda *args, **kwargs: next(curve))
    settings = TrainSettings(epochs=40, batch_size=8, patience=3, warmup_epochs=1.0, min_epochs=0, patience_steps=10)
    result = fit(TinyNet(tiny_data.num_classes), tiny_data, settings, resolve_runtime("cpu", "off"), seed=0)
    assert result.stopped == "plateau" and result.epochs_run == 3 + 5 + 2


def test_an_epoch_of_several_passes_counts_its_steps(tiny_data, monkeypatch):
    """``min_steps_per_epoch``: 16 images in batches of 8 are 2 steps a pass, so 5 steps make 3 passes an epoch.

    Validation runs once per epoch (not per pass), the images seen are 3 passes' worth, and the step
    patience counts the epoch's 6 steps: 10 steps are 2 epochs, not 5 as at one pass an epoch.
    """
    calls = []
    curve = iter([0.2, 0.4, 0.6] + [0.5] * 50)
    monkeypatch.setattr(loop, "evaluate_accuracy", lambda *args, **kwargs: calls.append(1) or next(curve))
    settings = TrainSettings(epochs=40, batch_size=8, patience=1, warmup_epochs=1.0, min_epochs=0, patience_steps=10,
                             min_steps_per_epoch=5)
    result = fit(TinyNet(tiny_data.num_classes), tiny_data, settings, resolve_runtime("cpu", "off"), seed=0)
    assert loop.steps_per_epoch_of(16, settings) == 6 and loop.passes_per_epoch(16, settings) == 3
    assert result.stopped == "plateau" and result.epochs_run == 3 + 2 + 1 == len(calls)
    assert result.train_images == result.epochs_run * 3 * 16


def test_a_setting_added_at_its_neutral_value_keeps_every_stored_hash():
    """The committed reference store's teachers were hashed before ``min_steps_per_epoch`` existed.

    At its neutral value (one pass an epoch) it stays out of the hash, so their checkpoints are still theirs;
    at any other value it is in the hash, so such a cell trains anew.
    """
    import json
    import sqlite3
    from pathlib import Path

    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.config_hash import config_hash, hashed_train
    from medkd_bench.run.run_options import RunOptions

    store = Path(__file__).resolve().parents[1] / "leaderboards" / "store" / "runs.sqlite"
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    rows = db.execute("SELECT hash, dataset, teacher, seed, config FROM cells WHERE method = 'teacher'").fetchall()
    assert rows, "the committed store has teacher cells"
    registry = load_registry()
    for stored_hash, dataset, teacher, seed, config in rows:
        stored = json.loads(config)
        # The dataset options the cell was trained with (a dataset's defaults may have changed since: session 26).
        options = RunOptions(dataset_options={dataset: stored["dataset"]["options"]})
        computer = CellComputer(registry, options, resolve_runtime("cpu", "fp32"))
        assert config_hash(stored) == stored_hash
        assert "min_steps_per_epoch" not in stored["model"]["train"]
        assert hashed_train(registry.teachers[teacher].train) == stored["model"]["train"], teacher
        cell = Cell(dataset, "teacher", teacher=teacher, seed=seed)
        if stored["model"]["revision"] == registry.teachers[teacher].revision:
            assert computer.hash(cell) == stored_hash, teacher
        else:  # the model's revision was bumped since (VGG19's 3, session 28): only the revision differs
            assert computer.hash(cell) != stored_hash, teacher
            assert config_hash(computer.config(cell)) == computer.hash(cell)
            current = computer.config(cell)
            current["model"]["revision"] = stored["model"]["revision"]
            assert config_hash(current) == stored_hash, teacher
    assert "min_steps_per_epoch" not in hashed_train(TrainSettings())
    assert hashed_train(TrainSettings(min_steps_per_epoch=48))["min_steps_per_epoch"] == 48


def test_fixed_epochs_run_exactly_n_whatever_the_curve(tiny_data, monkeypatch):
    monkeypatch.setattr(loop, "evaluate_accuracy", lambda *args, **kwargs: 0.5)  # flat from the start
    settings = TrainSettings(epochs=4, batch_size=8, patience=1, early_stopping=False)
    result = fit(TinyNet(tiny_data.num_classes), tiny_data, settings, resolve_runtime("cpu", "off"), seed=0)
    assert result.stopped == "fixed" and result.epochs_run == 4


def test_one_fixed_teacher_serves_every_student_seed_unless_asked_otherwise():
    registry = load_registry()
    fixed = plan(registry, "quick", ["visformer-s"], ["ofa-595"], ["synthetic-cxr"], seed=3, seeds=3)
    assert [c.seed for c in fixed if c.method == "teacher"] == [3]
    kd = [c for c in fixed if c.method == "kd"]
    assert [c.seed for c in kd] == [3, 4, 5] and {teacher_cell_of(c) for c in kd} == {fixed[0]}
    per_seed = plan(registry, "quick", ["visformer-s"], ["ofa-595"], ["synthetic-cxr"], seed=3, seeds=3,
                    teacher_seeds=3)
    teachers = [c for c in per_seed if c.method == "teacher"]
    assert [c.seed for c in teachers] == [3, 4, 5]
    assert [teacher_cell_of(c).seed for c in per_seed if c.method == "kd"] == [3, 4, 5]
    two = plan(registry, "quick", ["visformer-s"], ["ofa-595"], ["synthetic-cxr"], seeds=3, teacher_seeds=2)
    assert [teacher_cell_of(c).seed for c in two if c.method == "kd"] == [0, 1, 0]
    # A teacher per seed is today's design: its distilled cells are the ones planned before fixed teachers.
    assert teacher_cell_of(Cell("synthetic-cxr", "kd", "visformer-s", "ofa-595", seed=4)).seed == 4


def test_a_cell_no_better_than_the_most_frequent_class_is_named_as_at_chance():
    """A run stuck at chance stops "on a plateau" like any other; the pages name it (exact binomial test)."""
    from medkd_bench.report.convergence import above_chance, at_chance_text
    from medkd_bench.run.records import CellRecord

    def cell(seed, labels, predictions, method="cat-kd"):
        accuracy = sum(p == y for p, y in zip(predictions, labels, strict=True)) / max(1, len(labels))
        return CellRecord(f"h{seed}", "d", "visformer-s", "ofa-595", method, seed, "done", {},
                          {"accuracy": accuracy, "test_labels": labels, "test_predictions": predictions},
                          {}, {}, None, None, None)

    balanced = [0, 1, 2] * 100
    stuck = cell(1, balanced, [1] * 300)  # one class for every image: 1/3
    learned = cell(0, balanced, [y if i % 5 else (y + 1) % 3 for i, y in enumerate(balanced)])  # 80%
    barely = cell(2, balanced, [y if i < 120 else (y + 1) % 3 for i, y in enumerate(balanced)])  # 40%: p = 0.01
    majority = cell(0, [0] * 240 + [1] * 60, [0] * 300, method="label-only")  # 80%, all the most frequent class
    def stored(rec):
        return rec.metrics["test_labels"]

    assert [above_chance(c, stored(c)) for c in (stuck, learned, barely, majority)] == [False, True, True, False]
    assert above_chance(cell(3, [], []), []) is None and above_chance(stuck, None) is None

    text = at_chance_text({("cat-kd", "visformer-s", "ofa-595"): [learned, stuck, barely],
                           ("label-only", "", "ofa-595"): [majority]}, stored)
    assert text.startswith("2 cells no more accurate than always answering the most frequent test class "
                           "(one-sided exact binomial test, alpha 0.05): visformer-s -> ofa-595 (cat-kd), "
                           "seed 1: 33.3%; student ofa-595 (labels only), seed 0: 80.0%.")
    assert at_chance_text({("cat-kd", "visformer-s", "ofa-595"): [learned, barely]}, stored) is None
