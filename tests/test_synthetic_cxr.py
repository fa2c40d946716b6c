import numpy as np
import torch

from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry


def _spec():
    return load_registry().datasets["synthetic-cxr"]


def test_generation_is_deterministic_and_seeded():
    spec = _spec()
    a = spec.load("train", 32, None, {**spec.options, "n_train": 12})
    b = spec.load("train", 32, None, {**spec.options, "n_train": 12})
    c = spec.load("train", 32, None, {**spec.options, "n_train": 12, "seed": 1})
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_splits_are_balanced_and_masks_make_sense():
    spec = _spec()
    data = prepare(spec, 48, None, {"n_train": 30, "n_val": 6, "n_test": 6})
    train = data.splits["train"]
    assert train.images.shape == (30, 1, 48, 48) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [10, 10, 10]
    lung, lesion = train.masks["lung"], train.masks["lesion"]
    assert bool((lesion & ~lung).sum() == 0), "lesions lie inside the lungs"
    normal = train.labels == 2
    assert lesion[normal].sum() == 0 and lesion[~normal].flatten(1).any(1).all()
    assert 0.15 < lung.float().mean() < 0.5
    # COVID-19 is bilateral: lesion pixels on both halves; pneumonia unilateral.
    half = 48 // 2
    for i in range(30):
        left, right = bool(lesion[i, :, :half].any()), bool(lesion[i, :, half:].any())
        if int(train.labels[i]) == 0:
            assert left and right
        if int(train.labels[i]) == 1:
            assert left != right


def test_classes_differ_inside_the_lungs():
    spec = _spec()
    data = prepare(spec, 64, None, {"n_train": 60, "n_val": 3, "n_test": 3})
    train = data.splits["train"]
    density = [(train.images[:, 0].float() * train.masks["lung"]).sum((1, 2)) / train.masks["lung"].sum((1, 2))]
    means = [float(density[0][train.labels == c].mean()) for c in range(3)]
    assert means[2] < means[0] and means[2] < means[1]  # clear lungs are darkest
    assert np.isfinite(data.mean) and data.std > 0
