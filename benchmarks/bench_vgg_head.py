"""VGG19's head as matrix products (revision 3) against timm's convolutions, side by side.

timm's VGG head is a 7x7 then a 1x1 convolution over a 7x7 map (inputs under
224 px), each giving one output position: a fully connected layer that oneDNN
runs as a direct convolution. ``plugins/teachers/vgg19.py`` runs them as
``F.linear`` (:class:`WholeInputConv2d`). Both variants are built from the same
seed (same weights) and take turns on the same batches, order reversed each
round (``interleave.py``): milliseconds per training step (the harness's
``Trainer.step``, in the spec's CPU fast path) and images/s of batched
inference (Score-CAM, soft targets, the feature methods' teacher passes), with
the largest logit difference between the two.

Usage: python benchmarks/bench_vgg_head.py [--img-size 64] [--threads 1] [--rounds 4]
"""

from __future__ import annotations

import argparse
import itertools

import torch
from interleave import interleaved_medians

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.train.loop import Trainer


def build(spec, num_classes: int, img_size: int, timm_head: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = spec.build(num_classes, img_size)
    if timm_head:
        for conv in (model.pre_logits.fc1, model.pre_logits.fc2):
            conv.__class__ = torch.nn.Conv2d  # back to timm's module: same parameters
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does
    torch.set_num_threads(args.threads)
    registry = load_registry()
    spec = registry.teachers["vgg19"]
    data = prepare(registry.datasets["synthetic-cxr"], args.img_size, None, {"n_train": 96, "n_val": 8, "n_test": 8})
    rt = resolve_runtime("cpu", "auto").for_model(spec)  # the spec's CPU fast path, as a run takes it
    variants = {"timm conv head": True, "matmul head": False}
    models = {name: rt.prepare_model(build(spec, data.num_classes, data.img_size, timm)) for name, timm in
              variants.items()}
    x = torch.randn(128, 3, data.img_size, data.img_size)
    with torch.inference_mode(), rt.autocast():
        logits = [m.eval()(rt.to_model(x)).float() for m in models.values()]
    trainers = {name: Trainer(m.train(), data, spec.train, rt) for name, m in models.items()}
    batches = list(itertools.islice(train_batches(data, spec.train.batch_size, torch.Generator().manual_seed(0)), 3))
    step = interleaved_medians({n: (lambda b, t=t: t.step(*b)) for n, t in trainers.items()}, batches, args.rounds)

    def forward(model: torch.nn.Module):
        def run(batch: torch.Tensor) -> object:
            with torch.inference_mode(), rt.autocast():
                return model(rt.to_model(batch))
        return run

    infer = interleaved_medians({n: forward(m.eval()) for n, m in models.items()}, [x], args.rounds)
    print(f"torch {torch.__version__}, vgg19 at {data.img_size} px, {args.threads} thread(s), {rt.describe()}; "
          f"largest logit difference {(logits[0] - logits[1]).abs().max().item():.2e}")
    print(f"{'':<16}{'train ms/step':>15}{'infer img/s':>13}")
    for name in variants:
        print(f"{name:<16}{1e3 * step[name]:>15.0f}{128 / infer[name]:>13.1f}")
    old, new = variants
    print(f"{'speed-up':<16}{step[old] / step[new]:>14.2f}x{infer[old] / infer[new]:>12.2f}x")


if __name__ == "__main__":
    main()
