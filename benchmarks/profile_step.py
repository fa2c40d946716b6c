"""Where a training step and a Score-CAM batch spend their time, per built-in model (torch.profiler).

The matrix's wall time is training (about 60%) and Score-CAM (about 20%);
both are dominated by a handful of operators. For each model, in its
``--amp auto`` precision, this profiles a few harness training steps
(``Trainer.step``, after a warm-up step) and one batched inference pass like
Score-CAM's masked forward passes, and prints the top operators by self CPU
time with their share.

Usage: python benchmarks/profile_step.py [--models vgg19,...] [--threads 1] [--top 8]
"""

from __future__ import annotations

import argparse
import itertools

import torch
from torch.profiler import ProfilerActivity, profile

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.train.loop import Trainer


def top_ops(prof: profile, top: int, steps: int) -> list[str]:
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    lines = []
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        lines.append(f"    {e.key:<44}{e.self_cpu_time_total / 1e3 / steps:>9.1f} ms{e.self_cpu_time_total / total:>7.1%}"
                     f"{e.count // steps:>7} calls")
    lines.append(f"    {'total':<44}{total / 1e3 / steps:>9.1f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ofa-595,visformer-s,autoformer-v2-t,vgg19")
    parser.add_argument("--threads", type=int, default=1, help="1: as a --jobs 2 pool worker on 2 cores")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    registry = load_registry()
    runtime = resolve_runtime("auto", "auto")
    data = prepare(registry.datasets["synthetic-cxr"], None, None, {"n_train": 128, "n_val": 8, "n_test": 8})
    print(f"torch {torch.__version__}, {args.threads} thread(s), {data.img_size} px; self CPU time per step / pass")
    for name in args.models.split(","):
        spec = registry.teachers.get(name) or registry.students[name]
        rt = runtime.for_model(spec)
        torch.manual_seed(0)
        model = rt.prepare_model(spec.build(data.num_classes, data.img_size)).train()
        trainer = Trainer(model, data, spec.train, rt)
        generator = torch.Generator().manual_seed(0)
        batches = list(itertools.islice(train_batches(data, spec.train.batch_size, generator), args.steps + 1))
        trainer.step(*batches[0])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[1:]:
                trainer.step(*batch)
        print(f"\n{name} ({rt.precision}), training step, batch {spec.train.batch_size}:")
        print("\n".join(top_ops(prof, args.top, args.steps)))
        model.eval()
        x = rt.to_model(torch.randn(128, 3, data.img_size, data.img_size))
        with torch.inference_mode(), rt.autocast():
            model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
        print(f"{name} ({rt.precision}), inference, batch 128 (a Score-CAM batch):")
        print("\n".join(top_ops(prof, args.top, 1)))


if __name__ == "__main__":
    main()
