"""Every built-in model explains through grad-cam with its declared target layer."""

import functools

import numpy as np
import pytest
import torch

from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.train.loop import fit

REGISTRY = load_registry()
#: Score-CAM on a teacher is one forward pass per channel (384-512) per image: seconds each, so those are slow.
MODELS = [pytest.param("teacher", n, marks=pytest.mark.slow) for n in ("vgg19", "visformer-s", "autoformer-v2-t")] + [
    ("student", "ofa-595")]


@functools.cache
def _data(size: int = 64):
    return prepare(REGISTRY.datasets["synthetic-cxr"], size, None, {"n_train": 96, "n_val": 12, "n_test": 12})


#: Target layers with signed outputs (transformer token features). With random weights and
#: near-uniform Score-CAM weights their channel average is negative everywhere, so the ReLU-ed
#: CAM is flat; two short epochs break that symmetry. ReLU/h-swish layers need no training.
SIGNED_TARGETS = {"visformer-s", "autoformer-v2-t"}


def _model_for_cam(kind: str, name: str) -> tuple[torch.nn.Module, int]:
    """The model at the smallest size (32 px, else 64) where its CAM target layer is at least 2x2, and that size.

    Score-CAM costs one forward pass per target channel per image (512 for VGG19), so 32 px is four
    times cheaper; on a 1x1 grid every CAM is flat, which is what the test must not see.
    """
    spec = REGISTRY.get(kind, name)
    for size in (32, 64):
        torch.manual_seed(0)
        model = spec.build(3, size)
        if min(_target_grid(spec, model, size)) >= 2:
            break
    if name in SIGNED_TARGETS:
        fit(model, _data(size), spec.train.replace(epochs=2), resolve_runtime("cpu", "off"), seed=0)
    return model.eval(), size


def _target_grid(spec, model: torch.nn.Module, size: int) -> tuple[int, int]:
    """The spatial size of ``model``'s CAM target layer at ``size`` px (what Score-CAM upsamples)."""
    seen = []
    handle = spec.target_layers(model)[-1].register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    handle.remove()
    grid = spec.reshape_transform(seen[-1]) if spec.reshape_transform is not None else seen[-1]
    return tuple(grid.shape[-2:])


def _images(size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=g)
    x[1, :, : size // 2] += 2.0  # a different image: brighter top half
    return x


@pytest.mark.parametrize("kind,name", MODELS)
def test_score_cam_map_is_input_sized_non_constant_and_input_dependent(kind, name):
    spec = REGISTRY.get(kind, name)
    model, size = _model_for_cam(kind, name)
    test = _data(size).splits["test"]
    explain = REGISTRY.explainers["score-cam"].build(model, spec.target_layers(model), spec.reshape_transform)
    # Two images (each costs 136-512 forward passes): both maps informative, and not the same map.
    maps = explain(_data(size).normalise(test.images[:2]), test.labels[:2].tolist())
    assert maps.shape == (2, size, size)
    assert np.isfinite(maps).all()
    assert all(np.ptp(m) > 0 for m in maps), [float(np.ptp(m)) for m in maps]
    assert not np.allclose(maps[0], maps[1])


@pytest.mark.parametrize("explainer", ["grad-cam", "grad-cam-plus-plus", "eigen-cam"])
@pytest.mark.parametrize("kind,name", [("student", "ofa-595"), ("teacher", "autoformer-v2-t")])
def test_gradient_and_eigen_cams(explainer, kind, name):
    spec = REGISTRY.get(kind, name)
    torch.manual_seed(0)
    model = spec.build(3, 64).eval()
    explain = REGISTRY.explainers[explainer].build(model, spec.target_layers(model), spec.reshape_transform)
    maps = explain(_images(), [1, 2])
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    # the CAM released its hooks: the model runs hook-free afterwards
    assert not any(m._forward_hooks for m in model.modules())


BUILTIN_MODELS = [("student", "ofa-595"), ("teacher", "vgg19"), ("teacher", "visformer-s"),
                  ("teacher", "autoformer-v2-t")]


@functools.cache
def _random_model(kind: str, name: str) -> torch.nn.Module:
    """A built-in model with seeded random weights at 64 px (built once: both CAMs explain it)."""
    torch.manual_seed(0)
    return REGISTRY.get(kind, name).build(3, 64).eval()


@pytest.mark.parametrize("cam_class,explainer", [("GradCAM", "grad-cam"), ("GradCAMPlusPlus", "grad-cam-plus-plus")])
@pytest.mark.parametrize("kind,name", BUILTIN_MODELS)
def test_gradient_cams_backpropagate_above_the_target_layer_only_and_give_grad_cams_own_maps(
        kind, name, cam_class, explainer):
    """grad-cam's backward also computes every weight's gradient and every activation's below the
    target layer; ours stops at the target layer (2.2-2.4x faster on VGG19, OFA-595 and
    AutoFormer-V2-T, 1.3x on Visformer-S: benchmarks/bench_cam_backward.py) and gives grad-cam's
    maps to the bit."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    spec = REGISTRY.get(kind, name)
    model = _random_model(kind, name)
    layers = spec.target_layers(model)
    targets = [1, 2]
    with getattr(pytorch_grad_cam, cam_class)(model=model, target_layers=layers,
                                              reshape_transform=spec.reshape_transform) as cam:
        reference = cam(input_tensor=_images(), targets=[ClassifierOutputTarget(t) for t in targets])
    model.zero_grad(set_to_none=True)

    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    in_graph = []  # whether the first convolution's output is part of the graph the backward pass walks
    hook = first_conv.register_forward_hook(lambda module, args, out: in_graph.append(out.requires_grad))
    maps = REGISTRY.explainers[explainer].build(model, layers, spec.reshape_transform)(_images(), targets)
    hook.remove()

    assert np.array_equal(maps, reference)
    assert in_graph == [False]  # the backward pass could not get down to the first convolution
    assert all(p.grad is None for p in model.parameters())  # no weight gradient was computed
    assert all(p.requires_grad for p in model.parameters())  # and the model is given back trainable


def test_a_gradient_cam_with_an_in_place_layer_after_its_target_or_two_target_layers_is_still_grad_cams():
    """The target's output becomes a graph input as a clone, so an in-place ReLU after it still runs;
    with two target layers (one may feed the other) grad-cam's own backward is left as it is."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from medkd_bench.explain.cams import grad_cam_builder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(inplace=True),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    x = _images(16)
    for layers in ([model[1]], [model[0], model[1]]):
        with pytorch_grad_cam.GradCAM(model=model, target_layers=layers) as cam:
            reference = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in (0, 2)])
        model.zero_grad(set_to_none=True)
        maps = grad_cam_builder("GradCAM")(model, layers)(x, [0, 2])
        np.testing.assert_array_equal(maps, reference)
        assert np.ptp(maps) > 0


def test_batched_road_equals_grad_cams_road_combined():
    """Our one-batch ROAD gives grad-cam's ``ROADCombined`` scores (same noise, same formula)."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from medkd_bench.explain.faithfulness import road_faithfulness

    data = _data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 30 * 30, 3)).eval()
    test = data.splits["test"]
    maps = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    targets = [ClassifierOutputSoftmaxTarget(int(test.labels[i])) for i in range(4)]
    torch.manual_seed(3)
    with torch.no_grad():
        reference = ROADCombined(percentiles=[20, 40, 60, 80])(data.normalise(test.images[:4]), maps, targets, model)
    ours = road_faithfulness(model, data, list(range(4)), maps, resolve_runtime("cpu", "off"), seed=3, batch_size=5)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert np.abs(ours).max() > 1e-4  # the maps moved the class probability: the comparison is not 0 == 0


def test_score_cam_batches_on_a_gpu_halve_until_they_fit():
    """On a GPU Score-CAM batches every channel at once (512), halving on out-of-memory down to the CPU's 128."""
    from medkd_bench.explain.cams import gpu_batch_sizes, halving_on_oom

    assert gpu_batch_sizes(512, 128) == [512, 256, 128]
    assert gpu_batch_sizes(None, 128) == [None] and gpu_batch_sizes(64, 128) == [None]
    tried = []

    def call(size):
        tried.append(size)
        if size > 128:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return np.zeros(1)

    assert halving_on_oom(call, [512, 256, 128]).shape == (1,) and tried == [512, 256, 128]

    def never_fits(size):
        raise torch.OutOfMemoryError(f"CUDA out of memory at {size}")

    with pytest.raises(torch.OutOfMemoryError, match="at 128"):  # the last size's error reaches the cell
        halving_on_oom(never_fits, [512, 256, 128])
