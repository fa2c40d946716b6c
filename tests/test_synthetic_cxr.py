import numpy as np
import torch

from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from tests.helpers import assert_one_line_error


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


def test_difficulty_options_shape_the_evidence():
    """Revision 2's knobs: class-neutral opacities in every class, lesion contrast, atypical cases."""
    from medkd_bench_plugins.datasets.synthetic_cxr import make_sample

    def lung_density(label: int, **options) -> float:
        values = []
        for i in range(12):
            image, lung, _ = make_sample(0, "train", i, label, 48, options)
            values.append(float(image[lung].mean()))
        return float(np.mean(values))

    # Normal lungs are clear without distractors and denser with them: the opacities do not name a class.
    assert lung_density(2, distractors=6.0) > lung_density(2, distractors=0.0) + 1
    # Lesions scale with lesion_contrast; contrast 0 leaves COVID-19 lungs as dense as normal ones.
    clear = dict(distractors=0.0)
    assert lung_density(0, lesion_contrast=2.0, **clear) > lung_density(0, lesion_contrast=0.5, **clear) + 2
    # Contrast 0 removes the lesions: whatever their texture, the image is the same.
    no_lesion = [make_sample(0, "train", 3, 0, 48, {**clear, "lesion_contrast": 0.0, "texture": t})[0] for t in (0, 1)]
    assert np.array_equal(*no_lesion)
    # Atypical COVID-19: one lung carries only a faint blob, so its lesion mask is lopsided.
    def lopsided(atypical: float) -> int:
        count = 0
        for i in range(20):
            _, _, lesion = make_sample(0, "train", i, 0, 48, {"atypical": atypical})
            left, right = int(lesion[:, :24].sum()), int(lesion[:, 24:].sum())
            count += max(left, right) > 4 * max(1, min(left, right))
        return count
    assert lopsided(1.0) > lopsided(0.0)


def test_texture_patterns_ground_glass_and_leaves_normal_lungs_alone():
    """COVID-19's ground glass gets a fine reticular network: rougher inside the lesion than without texture."""
    from medkd_bench_plugins.datasets.synthetic_cxr import make_sample

    def roughness(label: int, texture: float) -> float:
        values = []
        for i in range(10):
            options = {"texture": texture, "lesion_contrast": 3.0, "distractors": 0.0}
            image, _, lesion = make_sample(0, "train", i, label, 64, options)
            img = image.astype(np.float64)
            lap = np.abs(4 * img[1:-1, 1:-1] - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:])
            inside = lesion[1:-1, 1:-1]
            values.append(lap[inside].mean() if inside.any() else 0.0)
        return float(np.mean(values))

    assert roughness(0, 1.0) > 1.1 * roughness(0, 0.0)
    normal = [make_sample(0, "train", i, 2, 48, {"texture": t})[0] for t in (0.0, 1.0) for i in range(2)]
    assert np.array_equal(normal[0], normal[2]) and np.array_equal(normal[1], normal[3])


def test_out_of_range_difficulty_is_refused_before_any_work(run_cli, dirs):
    result = run_cli(["run", "--matrix", "quick", *dirs, "--dataset-option", "synthetic-cxr.atypical=1.5"])
    assert_one_line_error(result, "atypical")
