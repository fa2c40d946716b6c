"""Cost of each explainer per image, per built-in model, measured side by side.

Score-CAM runs one forward pass per channel of the target layer for every
image (batched by grad-cam, 64 masked images per pass), so its cost is roughly
``channels x forward cost``; Grad-CAM, Grad-CAM++ and Eigen-CAM need one
forward (and backward) pass. The table prints seconds per image, the number of
target-layer channels, and Score-CAM's cost relative to Grad-CAM.

Usage: python benchmarks/bench_explain.py [--images 4] [--img-size 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from medkd_bench.data.prepare import prepare
from medkd_bench.explain.maps import compute_maps
from medkd_bench.registry import load_registry
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.device import resolve_runtime


def _width(explainer: str) -> int:
    return max(17, len(explainer) + 8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=64)
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does
    registry = load_registry()
    data = prepare(registry.datasets["synthetic-cxr"], args.img_size, None,
                   {"n_train": 12, "n_val": 3, "n_test": max(3, args.images)})
    images = data.normalise(data.splits["test"].images[: args.images])
    indices = list(range(args.images))
    runtime = resolve_runtime("cpu", "auto")
    explainers = sorted(registry.explainers)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images at {args.img_size} px")
    print(f"{'model':<17}{'precision':>10}{'channels':>9}" + "".join(f"{e + ' s/img':>{_width(e)}}" for e in explainers)
          + f"{'score/grad':>12}")
    specs = [*registry.teachers.values(), *registry.students.values()]
    for spec in specs:
        torch.manual_seed(0)
        model = spec.build(data.num_classes, data.img_size).eval()
        layer = spec.target_layers(model)[0]
        seen = {}
        hook = layer.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("out", o))
        with torch.no_grad():
            model(images[:1])
        hook.remove()
        out = seen["out"]
        if spec.reshape_transform is not None:
            out = spec.reshape_transform(out)
        costs = {}
        for name in explainers:
            start = time.perf_counter()
            compute_maps(spec, model, registry.explainers[name], data, indices, runtime.for_model(spec))
            costs[name] = (time.perf_counter() - start) / args.images
        ratio = costs.get("score-cam", 0) / costs["grad-cam"] if "grad-cam" in costs else float("nan")
        print(f"{spec.name:<17}{runtime.for_model(spec).precision:>10}{out.shape[1]:>9}"
              + "".join(f"{costs[e]:>{_width(e)}.3f}" for e in explainers)
              + f"{ratio:>12.0f}")


if __name__ == "__main__":
    main()
