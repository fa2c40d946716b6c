"""Teachers train on their dataset's teacher split; students, and every comparison between them, on train.

The generated datasets serve a ``teacher-train`` split (``DatasetSpec.teacher_split``):
the students' training images first, then more of their kind from a stream that never
feeds validation or test, standing in for the larger corpus a real teacher has seen.
"""

from __future__ import annotations

import pytest
import torch

from medkd_bench.data.prepare import prepare
from medkd_bench.errors import MedkdError
from medkd_bench.registry import load_registry
from medkd_bench.run.store import Store
from medkd_bench.specs import DatasetSpec, SplitData


@pytest.mark.parametrize("name", ["synthetic-cxr", "synthetic-histo"])
def test_the_teacher_split_is_the_train_split_then_images_of_its_own(name):
    spec = load_registry().get("dataset", name)
    data = prepare(spec, None, None, {"n_train": 12, "n_val": 6, "n_test": 6})
    teacher = data.for_teacher()
    train, more = data.splits["train"], teacher.splits["train"]
    assert len(more) == round(spec.options["teacher_train_factor"] * len(train)) > len(train)  # the default factor
    assert torch.equal(more.images[: len(train)], train.images)
    assert torch.equal(more.labels[: len(train)], train.labels)
    assert set(more.masks) == set(train.masks)
    # The extra images are new ones, not copies of the train, validation or test images.
    seen = {bytes(img.numpy()) for split in ("train", "val", "test") for img in data.splits[split].images}
    assert not any(bytes(img.numpy()) in seen for img in more.images[len(train):])
    # Validation, test and the normalisation are the students' own.
    assert teacher.splits["val"] is data.splits["val"] and teacher.splits["test"] is data.splits["test"]
    assert (teacher.mean, teacher.std) == (data.mean, data.std)
    assert teacher.checksums["train"] == data.checksums["teacher-train"] != data.checksums["train"]


def test_a_factor_of_one_trains_teachers_on_the_students_images():
    spec = load_registry().get("dataset", "synthetic-cxr")
    data = prepare(spec, None, None, {"n_train": 9, "n_val": 3, "n_test": 3, "teacher_train_factor": 1.0})
    assert torch.equal(data.for_teacher().splits["train"].images, data.splits["train"].images)


def test_a_teacher_split_may_not_reuse_a_split_name():
    spec = load_registry().get("dataset", "synthetic-cxr")
    bad = DatasetSpec(**{**spec.__dict__, "teacher_split": "test"})
    with pytest.raises(MedkdError, match="teacher_split 'test' must name a split other than train, val, test"):
        prepare(bad, None, None, {})


def test_a_run_trains_the_teacher_on_three_times_the_students_images(quick_run):
    with Store(quick_run / "work" / "runs.sqlite", readonly=True) as store:
        done = store.cells(status="done")
    teacher = next(r for r in done if r.method == "teacher")
    students = [r for r in done if r.method != "teacher"]
    assert students
    for student in students:
        assert teacher.metrics["n_train"] == 3 * student.metrics["n_train"]
        sums_t, sums_s = teacher.metrics["data_checksums"], student.metrics["data_checksums"]
        assert set(sums_t) == set(sums_s) == {"train", "val", "test"}  # the splits each cell used
        assert sums_t["train"] != sums_s["train"]
        assert (sums_t["val"], sums_t["test"]) == (sums_s["val"], sums_s["test"])


def test_the_page_says_how_many_images_teachers_and_students_trained_on(quick_run):
    page = (quick_run / "boards" / "synthetic-cxr.md").read_text()
    line = next(s for s in page.splitlines() if s.startswith("- Training images:"))
    assert line.startswith("- Training images: teachers 72, students 24. A teacher trains on its dataset's teacher split")
    assert "teacher_train_factor=1" in line
    # The provenance block labels the teacher's own train checksum instead of mixing it with the students'.
    assert "; teachers: train `" in page


def test_the_conformance_kit_checks_a_teacher_split_begins_with_the_train_split():
    from medkd_bench.testing import check_dataset_spec

    spec = load_registry().get("dataset", "synthetic-cxr")
    small = {"n_train": 9, "n_val": 3, "n_test": 3}
    check_dataset_spec(spec, options=small)  # the built-in passes

    def reversed_teacher_split(split, img_size, root, options):
        data = spec.load(split, img_size, root, options)
        if split != spec.teacher_split:
            return data
        return SplitData(images=data.images.flip(0), labels=data.labels.flip(0),
                         masks={k: v.flip(0) for k, v in data.masks.items()})

    bad = DatasetSpec(**{**spec.__dict__, "load": reversed_teacher_split})
    with pytest.raises(AssertionError, match="does not begin with the train split's 9 images"):
        check_dataset_spec(bad, options=small)


def test_a_quick_run_uses_each_datasets_quick_options_unless_given():
    from medkd_bench.run.plan import plan, quick_dataset_options

    registry = load_registry()
    cells = plan(registry, "quick", None, None, ["synthetic-cxr", "synthetic-histo"], 0)
    assert {c.dataset for c in cells} == {"synthetic-cxr"}  # one of each: the first dataset given
    quick = registry.get("dataset", "synthetic-cxr").quick_options
    assert quick["teacher_train_factor"] == 1.0 and quick["n_test"] < registry.get("dataset", "synthetic-cxr").options["n_test"]
    merged = quick_dataset_options(registry, cells, {"synthetic-cxr": {"n_test": 9}, "other": {"x": 1}})
    assert merged == {"synthetic-cxr": {**quick, "n_test": 9}, "other": {"x": 1}}  # given wins; others kept


def test_a_quick_option_the_dataset_does_not_have_is_refused_at_registration():
    import types

    from medkd_bench import hookimpl
    from medkd_bench.testing import registry_of

    spec = load_registry().get("dataset", "synthetic-cxr")
    plugin = types.ModuleType("quick_typo")

    @hookimpl
    def register_datasets(register):
        register(DatasetSpec(**{**spec.__dict__, "name": "odd", "options": {"n_test": 6},
                                "quick_options": {"n_tset": 6}}))

    plugin.register_datasets = register_datasets
    with pytest.raises(MedkdError, match=r"dataset 'odd': quick_options 'n_tset' not among its options \(n_test\)"):
        registry_of(plugin)
