"""Which CPU precision and memory format each built-in model should run in under ``--amp auto``.

For every model and every combination of float32 / bf16 autocast and
contiguous / channels-last: milliseconds per training step (the harness's
``Trainer.step``) and images/s of batched inference (what Score-CAM, soft
targets and scoring run), at 1 thread (a ``--jobs 2`` pool worker) and at 2
threads (one process). The four variants take turns on the same batch, the
order reversed each round, so the VM's drift falls on all alike. The spec
flags ``cpu_bf16`` / ``cpu_channels_last`` should name the fastest variant;
bf16 is only offered on CPUs with native bf16 units.

Usage: python benchmarks/bench_precision.py [--models vgg19,...] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
from interleave import interleaved_medians

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import PreparedData, prepare
from medkd_bench.registry import load_registry
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.device import Runtime, cpu_has_native_bf16
from medkd_bench.specs import ModelSpec
from medkd_bench.train.loop import Trainer

VARIANTS = {
    "fp32": (None, False),
    "fp32+cl": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16+cl": (torch.bfloat16, True),
}


def step_ms(spec: ModelSpec, data: PreparedData, runtimes: dict[str, Runtime], rounds: int) -> dict[str, float]:
    trainers = {}
    for name, rt in runtimes.items():
        torch.manual_seed(0)
        model = rt.prepare_model(spec.build(data.num_classes, data.img_size)).train()
        trainers[name] = Trainer(model, data, spec.train, rt)
    batches = list(itertools.islice(train_batches(data, spec.train.batch_size, torch.Generator().manual_seed(0)), 3))
    seconds = interleaved_medians({name: (lambda b, t=t: t.step(*b)) for name, t in trainers.items()}, batches, rounds)
    return {name: s * 1e3 for name, s in seconds.items()}


@torch.inference_mode()
def inference_rate(spec: ModelSpec, data: PreparedData, runtimes: dict[str, Runtime], rounds: int,
                   batch: int = 128) -> dict[str, float]:
    def forward(model: torch.nn.Module, rt: Runtime) -> Callable[[torch.Tensor], object]:
        def run(x: torch.Tensor) -> object:
            with rt.autocast():
                return model(rt.to_model(x))
        return run

    variants = {}
    for name, rt in runtimes.items():
        torch.manual_seed(0)
        variants[name] = forward(rt.prepare_model(spec.build(data.num_classes, data.img_size)).eval(), rt)
    x = torch.randn(batch, 3, data.img_size, data.img_size)
    return {name: batch / s for name, s in interleaved_medians(variants, [x], rounds).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ofa-595,visformer-s,autoformer-v2-t,vgg19")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does
    registry = load_registry()
    data = prepare(registry.datasets["synthetic-cxr"], None, None, {"n_train": 96, "n_val": 8, "n_test": 8})
    cpu = torch.device("cpu")
    names = [n for n in VARIANTS if cpu_has_native_bf16() or not n.startswith("bf16")]
    runtimes = {n: Runtime(cpu, VARIANTS[n][0], channels_last=VARIANTS[n][1]) for n in names}
    print(f"torch {torch.__version__}, {data.img_size} px, native bf16: {cpu_has_native_bf16()}; "
          "train: ms per step (lower is better); infer: images/s at batch 128 (higher is better)")
    header = "".join(f"{n:>10}" for n in names)
    print(f"{'model':<17}{'threads':>8}{'':>7}{header}{'spec flags':>14}{'fastest':>10}")
    for name in args.models.split(","):
        spec = registry.teachers.get(name) or registry.students[name]
        flags = ("bf16" if spec.cpu_bf16 else "fp32") + ("+cl" if spec.cpu_channels_last else "")
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            train = step_ms(spec, data, runtimes, args.rounds)
            infer = inference_rate(spec, data, runtimes, args.rounds)
            print(f"{name:<17}{threads:>8}{'train':>7}" + "".join(f"{train[n]:>10.0f}" for n in names)
                  + f"{flags:>14}{min(train, key=train.get):>10}")
            print(f"{'':<17}{'':>8}{'infer':>7}" + "".join(f"{infer[n]:>10.0f}" for n in names)
                  + f"{'':>14}{max(infer, key=infer.get):>10}")


if __name__ == "__main__":
    main()
