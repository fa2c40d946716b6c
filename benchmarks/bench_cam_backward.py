"""Gradient CAMs with grad-cam's own backward pass against ours (above the target layer only), side by side.

grad-cam runs ``loss.backward()`` with the model's parameters requiring gradients: every weight's
gradient and every activation's below the target layer are computed, and a CAM reads none of
them. medkd-bench's builders freeze the parameters and start the graph at the target layer's
output (:func:`medkd_bench.explain.cams.backward_above_the_target_layer_only`). Both variants
take turns on the same images (``interleave.py``) with each built-in model's seeded random
weights; the script checks that the maps are identical to the last bit and prints milliseconds
per call (one batch of ``--images``) and the ratio, for Grad-CAM and Grad-CAM++.

Usage: python benchmarks/bench_cam_backward.py [--images 6] [--img-size 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
from unittest import mock

import numpy as np
import torch
from interleave import interleaved_medians

from medkd_bench.explain import cams
from medkd_bench.registry import load_registry
from medkd_bench.runtime.allocator import keep_freed_memory

CAMS = ("grad-cam", "grad-cam-plus-plus")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does
    registry = load_registry()
    images = torch.randn(args.images, 3, args.img_size, args.img_size, generator=torch.Generator().manual_seed(0))
    targets = [i % 3 for i in range(args.images)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.images} images at "
          f"{args.img_size} px; ms per call, median of {args.rounds} interleaved rounds")
    print(f"{'model':<17}{'explainer':<20}| grad-cam's backward | above the target only | ratio | identical")
    for spec in [*registry.teachers.values(), *registry.students.values()]:
        torch.manual_seed(0)
        model = spec.build(3, args.img_size).eval()
        for name in CAMS:
            explain = registry.explainers[name].build(model, spec.target_layers(model), spec.reshape_transform)

            def full_backward(x: torch.Tensor, explain=explain) -> np.ndarray:
                with mock.patch.object(cams, "backward_above_the_target_layer_only",
                                       lambda *a: contextlib.nullcontext()):
                    return explain(x, targets)

            def ours(x: torch.Tensor, explain=explain) -> np.ndarray:
                return explain(x, targets)

            same = np.array_equal(full_backward(images), ours(images))
            ms = {k: s * 1e3 for k, s in interleaved_medians({"full": full_backward, "ours": ours}, [images],
                                                             args.rounds).items()}
            print(f"{spec.name:<17}{name:<20}| {ms['full']:19.1f} | {ms['ours']:21.1f} | "
                  f"{ms['full'] / ms['ours']:5.2f} | {same}")


if __name__ == "__main__":
    main()
