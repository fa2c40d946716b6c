"""The conformance kit: every built-in plugin passes it, and every rule catches what it guards against.

Built-ins are taken from the registry (every plugin the medkd-bench distribution itself
registers), so a new built-in is checked without touching this file. Big models are checked
at one size and as few class counts as the rule needs: CI has two cores.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medkd_bench import (
    DatasetSpec,
    ExplainerSpec,
    SplitData,
    StudentSpec,
    TeacherSpec,
    TrainSettings,
    last_module,
    timm_builder,
)
from medkd_bench.registry import load_registry
from medkd_bench.testing import (
    check_dataset_spec,
    check_explainer_spec,
    check_student_spec,
    check_teacher_spec,
    registry_of,
)
from tests.helpers import plugin_fixture

REGISTRY = load_registry()
BUILTIN_ORIGIN = "entry point (medkd-bench)"
#: The built-ins of the source study; the registry may hold more, all of which are checked.
EXPECTED = {"teacher": {"vgg19", "visformer-s", "autoformer-v2-t"}, "student": {"ofa-595"},
            "dataset": {"synthetic-cxr"}, "explainer": {"score-cam"}}
#: Per-model kit arguments: VGG19 has 140M parameters, so one build at 32 px; the transformers
#: are sized from the input (img_size), so their class counts are checked at one size.
MODEL_ARGS = {
    "vgg19": {"num_classes": (2,), "img_sizes": (32,)},
    "visformer-s": {"num_classes": (2, 3), "img_sizes": (32,)},
    "autoformer-v2-t": {"num_classes": (2, 3), "img_sizes": (32,)},
}
TINY_EMBEDDED = {"n_train": 6, "n_val": 3, "n_test": 3}


def _builtins(kind: str) -> list[str]:
    owners = {p.name for p in REGISTRY.plugins if p.origin == BUILTIN_ORIGIN}
    return sorted(name for name in REGISTRY.specs[kind] if REGISTRY.owners[(kind, name)] in owners)


def test_the_study_builtins_are_all_covered():
    for kind, names in EXPECTED.items():
        assert names <= set(_builtins(kind)), kind


@pytest.mark.parametrize("name", _builtins("teacher"))
def test_builtin_teacher_conforms(name):
    check_teacher_spec(REGISTRY.teachers[name], **MODEL_ARGS.get(name, {}))


@pytest.mark.parametrize("name", _builtins("student"))
def test_builtin_student_conforms(name):
    check_student_spec(REGISTRY.students[name], **MODEL_ARGS.get(name, {}))


#: ChestMNIST is multi-label: its names exist to refuse it with a reason (tests/test_medmnist.py).
REFUSED = {name for name in REGISTRY.datasets if name.startswith("medmnist-chestmnist")}


@pytest.mark.parametrize("name", sorted(set(_builtins("dataset")) - REFUSED))
def test_builtin_dataset_conforms(name, tmp_path):
    spec = REGISTRY.datasets[name]
    options = TINY_EMBEDDED if name.startswith("synthetic-") else None
    root = None
    if name.startswith("medmnist-"):  # one small file in MedMNIST's format, at the variant's size
        from medkd_bench_plugins.datasets.medmnist import variants
        from tests.fixture_trees import medmnist_npz

        (v,) = [v for v in variants() if v.name == name]
        medmnist_npz(tmp_path / v.file, size=v.size, channels=spec.channels, classes=spec.num_classes,
                     per_split={"train": spec.num_classes, "val": 2, "test": 2})
        root = tmp_path
    elif spec.needs_root:  # real datasets: tiny trees in their published layouts, real PNG/JPEG files
        from tests.fixture_trees import covid_tree, lc_tree

        covid_tree(tmp_path, "lung", {"Train": 2, "Val": 1, "Test": 1})
        covid_tree(tmp_path, "infection", {"Train": 2, "Val": 1, "Test": 1})
        lc_tree(tmp_path, per_class=5)
        root = tmp_path
    check_dataset_spec(spec, img_sizes=(32, 48), root=root, options=options)


@pytest.mark.parametrize("name", _builtins("explainer"))
def test_builtin_explainer_conforms(name):
    check_explainer_spec(REGISTRY.explainers[name])


def test_checks_leave_threads_and_rng_as_they_were():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_explainer_spec(REGISTRY.explainers["score-cam"])
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)


# ---- models: each rule fails with the spec's name and the rule -------------------------------

GOOD_TEACHER = TeacherSpec(name="tiny-resnet", build=timm_builder("resnet10t"), target_layers=last_module("layer4"),
                           citation="He et al., Deep Residual Learning for Image Recognition, CVPR 2016")


class FixedHead(nn.Module):
    """A model that ignores num_classes: always four logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class TrainingHead(FixedHead):
    """A model with one class too many in train mode only (a run fails every cell of it)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(8, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits if self.training else logits[:, :-1]


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"target_layers": last_module("layer5")},
         r"TeacherSpec 'tiny-resnet': target_layers\(model\) raised AttributeError.*declared target-layer path exist"),
        ({"build": lambda num_classes, img_size: FixedHead(), "target_layers": last_module("features.1")},
         r"TeacherSpec 'tiny-resnet': forward on \(2, 3, 32, 32\) must give logits \(2, 2\), got \(2, 4\)"),
        ({"build": lambda num_classes, img_size: TrainingHead(num_classes), "target_layers": last_module("features.1")},
         r"forward in train mode on \(2, 3, 32, 32\) must give logits \(2, 2\), got \(2, 3\)"),
        ({"target_layers": lambda model: [nn.Conv2d(3, 3, 1)]},
         "must return submodules of the model it is given"),
        ({"target_layers": lambda model: []}, "returned no layer"),
        ({"name": "Tiny_ResNet"}, "TeacherSpec 'Tiny_ResNet': name 'Tiny_ResNet' is not allowed"),
        ({"citation": "  "}, "TeacherSpec 'tiny-resnet': citation is empty"),
        ({"train": TrainSettings(batch_size=1)}, "train.batch_size must be >= 2"),
        ({"train": TrainSettings(min_steps_per_epoch=-4)}, "train.min_steps_per_epoch must be an integer >= 0"),
        ({"build": lambda num_classes, img_size: "not a model"}, "must return an nn.Module"),
    ],
    ids=["missing-target-layer", "head-ignores-num-classes", "head-differs-in-train-mode", "foreign-target-layer",
         "no-target-layer", "name-not-a-slug", "no-citation", "batch-of-one", "negative-epoch-steps",
         "build-returns-junk"],
)
def test_teacher_rules(changes, message):
    spec = dataclasses.replace(GOOD_TEACHER, **changes)
    with pytest.raises(AssertionError, match=message):
        check_teacher_spec(spec, num_classes=(2,), img_sizes=(32,))


def test_good_teacher_passes_at_two_sizes():
    check_teacher_spec(GOOD_TEACHER, num_classes=(2, 5), img_sizes=(32, 64))


def test_score_cam_itself_can_check_a_target_layer():
    check_teacher_spec(GOOD_TEACHER, num_classes=(3,), img_sizes=(32,), explainer=REGISTRY.explainers["score-cam"])


def test_token_model_without_reshape_transform_is_named():
    vit = TeacherSpec(name="vit-tiny", build=timm_builder("vit_tiny_patch16_224", accepts_img_size=True),
                      target_layers=last_module("blocks.11"), citation="Dosovitskiy et al., ICLR 2021")
    with pytest.raises(AssertionError, match=r"TeacherSpec 'vit-tiny': CAM at the declared target layer failed.*"
                                             r"reshape_transform"):
        check_teacher_spec(vit, num_classes=(2,), img_sizes=(32,))


def test_student_check_wants_a_student_spec():
    with pytest.raises(AssertionError, match="TeacherSpec 'tiny-resnet': expected a StudentSpec"):
        check_student_spec(GOOD_TEACHER)


def test_student_rules():
    student = StudentSpec(name="tiny-student", build=timm_builder("resnet10t"), target_layers=last_module("layer9"),
                          citation="He et al., 2016")
    with pytest.raises(AssertionError, match="StudentSpec 'tiny-student': target_layers"):
        check_student_spec(student, num_classes=(2,), img_sizes=(32,))


# ---- datasets ---------------------------------------------------------------------------------


def _tiny_loader(channels: int = 1, labels_of: Callable[[int], list[int]] = lambda n: [i % 2 for i in range(n)],
                 masks: bool = True, seeded: bool = True) -> Callable:
    def load(split, img_size, root, options):
        n = int(options["n"])
        generator = torch.Generator().manual_seed(0) if seeded else None
        images = torch.randint(0, 255, (n, channels, img_size, img_size), dtype=torch.uint8, generator=generator)
        mask = {"roi": images[:, 0] > 127} if masks else {}
        return SplitData(images=images, labels=torch.tensor(labels_of(n), dtype=torch.int64), masks=mask)

    return load


GOOD_DATASET = DatasetSpec(name="tiny-data", classes=("a", "b"), load=_tiny_loader(), channels=1,
                           mask_names=("roi",), localisation_mask="roi", options={"n": 4}, citation="generated")


def test_good_dataset_passes():
    check_dataset_spec(GOOD_DATASET, img_sizes=(16, 32))


@pytest.mark.parametrize(
    "changes,kwargs,message",
    [
        ({"load": _tiny_loader(labels_of=lambda n: [0] * n)}, {}, "split 'train' at 32 px has no sample of class(es) 'b'"),
        ({"load": _tiny_loader(channels=3)}, {}, "images must be (N, 1, 32, 32) as declared"),
        ({"load": _tiny_loader(labels_of=lambda n: [0, 1, 2, 1][:n])}, {}, "labels must lie in [0, 1], got [0, 2]"),
        ({"load": _tiny_loader(masks=False)}, {}, "declared mask(s) roi missing"),
        ({"load": _tiny_loader(seeded=False)}, {}, "loading split 'train' twice at 32 px gives different data"),
        ({"localisation_mask": "lesion"}, {}, "localisation_mask 'lesion' is not one of mask_names"),
        ({"classes": ("a",)}, {}, "classes must be at least two distinct names"),
        ({}, {"options": {"n_train": 3}}, "unknown option(s) n_train"),
        ({"load": lambda split, size, root, options: [1, 2]}, {}, "must return a SplitData"),
        ({"needs_root": True}, {}, "needs a local copy of the data"),
    ],
    ids=["class-missing-in-train", "wrong-channels", "label-out-of-range", "mask-missing", "not-deterministic",
         "bad-localisation-mask", "one-class", "unknown-option", "not-splitdata", "needs-root"],
)
def test_dataset_rules(changes, kwargs, message):
    spec = dataclasses.replace(GOOD_DATASET, **changes)
    with pytest.raises(AssertionError, match="DatasetSpec 'tiny-data': .*" + re.escape(message)):
        check_dataset_spec(spec, **kwargs)


# ---- explainers ---------------------------------------------------------------------------------


def _explainer(transform: Callable[[np.ndarray], np.ndarray]) -> ExplainerSpec:
    def build(model, target_layers, reshape_transform=None):
        def explain(images, targets):
            return transform(np.full((len(targets), images.shape[2], images.shape[3]), 0.5, dtype=np.float32))

        return explain

    return ExplainerSpec(name="fake-cam", build=build, citation="none really")


@pytest.mark.parametrize(
    "transform,message",
    [
        (lambda maps: maps * 4.0, r"maps must be scaled to \[0, 1\], got \[2, 2\]"),
        (lambda maps: maps[:, ::4, ::4], r"maps must be \(N, H, W\) = \(2, 32, 32\), got \(2, 8, 8\)"),
        (lambda maps: maps * np.nan, "maps contain NaN or inf"),
        (lambda maps: (maps > 0).astype(np.int64), "maps must be floats"),
        (lambda maps: 1 / 0, "explaining timm resnet10t at layer3 raised ZeroDivisionError"),
    ],
    ids=["not-scaled", "not-upsampled", "nan", "integers", "raises"],
)
def test_explainer_rules(transform, message):
    check_explainer_spec(_explainer(lambda maps: maps))  # the fake itself conforms
    with pytest.raises(AssertionError, match="ExplainerSpec 'fake-cam': " + message):
        check_explainer_spec(_explainer(transform))


# ---- registry_of --------------------------------------------------------------------------------

def test_registry_of_loads_only_the_plugins_named():
    path = Path(plugin_fixture("file_teacher"))
    for plugin in (path, str(path)):
        registry = registry_of(plugin)
        assert set(registry.teachers) == {"file-teacher"} and not registry.students
    assert set(registry_of("medkd_bench_plugins.explainers.score_cam").explainers) == {"score-cam"}
    import medkd_bench_plugins.students.ofa_595 as ofa

    assert set(registry_of(ofa).students) == {"ofa-595"}
