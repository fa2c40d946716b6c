"""The GPU fast path of every built-in model, measured in one short run (issue 20).

Sections, in the order they run (cheapest and most wanted first, the capped
``torch.compile`` last):

3. Batch-1 latency as deployed, per model at ``--latency-img-size`` (the
   datasets' default 64 px, what the leaderboards time): the harness's own
   ``measure_latency`` in eager fp32 and in its CUDA default (bf16 autocast +
   channels-last), then the model converted to half precision (fp16 weights),
   eager and replayed from a CUDA graph (fp32, fp16, fp16 + channels-last,
   bf16). For ``--cpu-latency-models`` (ofa-595) also the CPU latency with all
   cores and with 2 threads: the "GPU below CPU" target.
1. Training step ms (the harness's ``Trainer.step``, median of interleaved
   rounds after a warm-up round) at ``--img-size`` (224) and each spec's batch
   size, for fp32 (TF32 off), tf32 (TF32 on), bf16 and fp16 autocast (fp16 with
   the harness's GradScaler), each contiguous and channels-last. Reported
   separately: each variant's FIRST step from a fresh model (kernel selection,
   cuDNN heuristics, allocator growth), its second step, and the first step's
   peak extra memory.
2. Inference images/s at batch 128 for the same variants (same models, eval
   mode), with each variant's first batch reported on its own.
4. Harness vs a bare loop (textbook step: autocast, cross-entropy,
   ``torch.optim.AdamW(fused=True)``; GradScaler for fp16) and a bare loop that
   also clips, in the harness's default precision (``--amp``), at ``--img-size``:
   per step with a synchronise around each, and in back-to-back blocks of an
   epoch's batches with one synchronise per block (what ``fit`` sees; the
   harness reads the loss every step, the bare loop never does).
5. GPU utilisation (nvidia-smi ``utilization.gpu``, the share of time a kernel
   was running, sampled every ``--util-period-ms``) during ``--util-seconds`` of
   VGG19 training with the harness in its fastest section-1 variant, then half
   as long with the bare loop.
3b. ``torch.compile`` of ofa-595's deployed fp16 model at batch 1, each of
    ``--compile-modes`` in a child process capped at ``--compile-cap-s`` (and at
    what is left of ``--budget-s``); compile time (first call) and latency.

Every section checks ``--budget-s`` before each model and leaves time for the
later ones; progress lines carry the elapsed wall time, and with ``--out DIR``
everything printed goes to DIR/bench_gpu.log and the figures to
DIR/bench_gpu.json (rewritten after every model), so a run killed part-way
still leaves a useful log. On ``--device cpu`` the CUDA-only parts (graphs,
TF32, utilisation, compile) are skipped with a note: a smoke test.

Usage: python benchmarks/bench_gpu.py [--out DIR] [--models ofa-595,...] [--img-size 224]
       python benchmarks/bench_gpu.py --device cpu --img-size 32 --models ofa-595 --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import faulthandler
import gc
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from interleave import interleaved_medians
from torch import nn

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import prepare
from medkd_bench.evaluate.cost import measure_latency
from medkd_bench.registry import load_registry

# Every name this script takes from medkd_bench, in one block (remap here if modules move).
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.device import Runtime, resolve_runtime, tf32_enabled
from medkd_bench.train.loop import Trainer

#: The two with targets first (ofa-595: latency, warm-up; vgg19: utilisation), so a short budget keeps them.
MODELS = "ofa-595,vgg19,visformer-s,autoformer-v2-t"
#: name -> (autocast dtype, channels-last, TF32 for matmuls and cuDNN: True/False, or None = torch's defaults)
VARIANTS: dict[str, tuple[torch.dtype | None, bool, bool | None]] = {
    "fp32": (None, False, False),
    "fp32+cl": (None, True, False),
    "tf32": (None, False, True),
    "tf32+cl": (None, True, True),
    "bf16": (torch.bfloat16, False, None),
    "bf16+cl": (torch.bfloat16, True, None),
    "fp16": (torch.float16, False, None),
    "fp16+cl": (torch.float16, True, None),
}
#: Share of --budget-s each section leaves for the ones after it: it starts no new model with less left.
#: At the default 380 s: latency stops starting models after ~90 s, training after ~270 s, the harness
#: comparison after ~310 s, utilisation after ~335 s; compile gets what is left less ~11 s.
KEEP_AFTER = {"latency": 0.76, "train": 0.29, "harness": 0.18, "util": 0.12, "compile": 0.03}

START = time.perf_counter()
RESULTS: dict[str, Any] = {}
OUT: Path | None = None
#: The compile child while it runs: it has its own process session, so a SIGTERM to us must end it too.
CHILD: subprocess.Popen | None = None
LOG: Any = None


# ---------------------------------------------------------------- output, budget


class Tee:
    """Writes to the console and to the log file, flushing both at once (a killed run keeps its log)."""

    def __init__(self, stream: Any, log: Any) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        self.log.write(text)
        self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def elapsed() -> float:
    return time.perf_counter() - START


def say(message: str) -> None:
    print(f"[{elapsed():6.1f}s] {message}", flush=True)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - elapsed()

    def keep(self, section: str) -> float:
        """Seconds ``section`` leaves for the sections after it."""
        return KEEP_AFTER[section] * self.seconds

    def allows(self, section: str, what: str) -> bool:
        left = self.left()
        if left < self.keep(section):
            say(f"SKIPPED {what}: {left:.0f} s of --budget-s left, {self.keep(section):.0f} s kept for later sections")
            return False
        return True


def save() -> None:
    if OUT is not None:
        (OUT / "bench_gpu.json").write_text(json.dumps(RESULTS, indent=1, default=str))


def record(section: str, model: str, values: dict[str, Any]) -> None:
    RESULTS.setdefault(section, {})[model] = values
    save()


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def table_row(label: str, values: list[Any], spec: str, width: int = 11, label_width: int = 26) -> str:
    return f"  {label:<{label_width}}" + "".join(f"{fmt(v, spec):>{width}}" for v in values)


def short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


# ---------------------------------------------------------------- devices, models


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def tf32_mode(enabled: bool | None) -> contextlib.AbstractContextManager:
    """TF32 for matmuls and cuDNN on (True) or off (False) inside, restored after; None leaves them."""
    return contextlib.nullcontext() if enabled is None else tf32_enabled(enabled)


def under_tf32(fn: Callable[[Any], object], enabled: bool | None) -> Callable[[Any], object]:
    """``fn`` with its variant's TF32 flags set around each call (variants are timed in turn)."""
    def run(item: Any) -> object:
        with tf32_mode(enabled):
            return fn(item)
    return run


class Models:
    """Each model built once per image size (seeded), handed out as fresh CPU copies."""

    def __init__(self, registry: Any, num_classes: int) -> None:
        self.registry, self.num_classes = registry, num_classes
        self.built: dict[tuple[str, int], nn.Module] = {}

    def spec(self, name: str) -> Any:
        return self.registry.teachers.get(name) or self.registry.students[name]

    def fresh(self, name: str, img_size: int) -> nn.Module:
        key = (name, img_size)
        if key not in self.built:
            torch.manual_seed(0)
            self.built[key] = self.spec(name).build(self.num_classes, img_size)
        return copy.deepcopy(self.built[key])


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Deployed(nn.Module):
    """A model as deployed: weights in ``dtype`` and ``memory_format``; float32 images in, logits out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.model = model.to(dtype=dtype)
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(dtype=self.dtype, memory_format=self.format))


class GraphReplay(nn.Module):
    """``fn`` captured once in a CUDA graph on a static input; a call copies its input in and replays."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], static: torch.Tensor, warmup: int = 3) -> None:
        super().__init__()
        self.static = static
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the default stream, as torch's docs capture
            for _ in range(warmup):
                fn(static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(static)
        torch.cuda.synchronize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.static.copy_(x)
        self.graph.replay()
        return self.out


# ---------------------------------------------------------------- section 3: batch-1 latency


def latency_stats(model: nn.Module, img_size: int, runtime: Runtime, args: argparse.Namespace,
                  min_seconds: float | None = None) -> dict[str, float]:
    """The harness's own batch-1 latency: median of synchronised timed runs after warm-up."""
    return measure_latency(model, img_size, runtime, warmup=10, runs=args.latency_runs,
                           min_seconds=args.latency_min_s if min_seconds is None else min_seconds)


def gpu_latency_variants(base: nn.Module, size: int, device: torch.device, args: argparse.Namespace
                         ) -> tuple[dict[str, Any], dict[str, float]]:
    """ms per batch-1 forward of each deployment variant; and capture ms of each CUDA graph."""
    cuda = device.type == "cuda"
    plain = Runtime(device)  # float32 contiguous input; Deployed/GraphReplay convert it themselves
    sync = synchronizer(device)
    out: dict[str, Any] = {}
    first_ms: dict[str, float] = {}

    def attempt(name: str, make: Callable[[], tuple[nn.Module, Runtime]]) -> None:
        try:
            start = time.perf_counter()
            model, runtime = make()
            if name.startswith("graph"):  # the capture, with its 3 warm-up calls, is the graph's first call
                first_ms[name] = (time.perf_counter() - start) * 1e3
            else:
                with torch.inference_mode():
                    x = runtime.to_model(torch.randn(1, 3, size, size, device=device))

                    def call(model: nn.Module = model, runtime: Runtime = runtime, x: torch.Tensor = x) -> None:
                        with runtime.autocast():
                            model(x)

                    first_ms[name] = timed(call, sync) * 1e3
            out[name] = latency_stats(model, size, runtime, args)
        except Exception as exc:  # one variant failing must not cost the others
            out[name] = {"error": short_error(exc)}
            say(f"  {name}: {short_error(exc)}")
        finally:
            free_memory()

    def harness(amp: torch.dtype | None, channels_last: bool) -> tuple[nn.Module, Runtime]:
        runtime = Runtime(device, amp, channels_last=channels_last)
        return runtime.prepare_model(copy.deepcopy(base)).eval(), runtime

    def deployed(dtype: torch.dtype, channels_last: bool) -> Deployed:
        return Deployed(copy.deepcopy(base).to(device).eval(), dtype, channels_last)

    def graph(dtype: torch.dtype, channels_last: bool) -> tuple[nn.Module, Runtime]:
        model = deployed(dtype, channels_last)
        with torch.inference_mode():
            static = torch.randn(1, 3, size, size, device=device).to(dtype=dtype, memory_format=model.format)
            return GraphReplay(model, static), plain

    attempt("fp32", lambda: harness(None, False))
    attempt("bf16+cl amp", lambda: harness(torch.bfloat16, True))
    if not cuda:
        say("  (cpu: half-precision weights and CUDA graphs skipped)")
        return out, first_ms
    attempt("fp16", lambda: (deployed(torch.float16, False), plain))
    attempt("fp16+cl", lambda: (deployed(torch.float16, True), plain))
    attempt("graph fp32", lambda: graph(torch.float32, False))
    attempt("graph fp16", lambda: graph(torch.float16, False))
    attempt("graph fp16+cl", lambda: graph(torch.float16, True))
    attempt("graph bf16", lambda: graph(torch.bfloat16, False))
    return out, first_ms


def cpu_latency(base: nn.Module, spec: Any, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 CPU latency with all cores and with 2 threads, fp32 and the spec's CPU fast path."""
    cpu = torch.device("cpu")
    runtimes = {"fp32": Runtime(cpu)}
    if spec.cpu_channels_last:  # the spec's CPU fast path under --amp auto (no bf16 for ofa-595)
        runtimes["fp32+cl"] = Runtime(cpu, None, channels_last=True)
    saved = torch.get_num_threads()
    out: dict[str, Any] = {}
    try:
        for threads in sorted({len(os.sched_getaffinity(0)), 2}, reverse=True):
            torch.set_num_threads(threads)
            for name, rt in runtimes.items():
                model = rt.prepare_model(copy.deepcopy(base)).eval()
                stats = latency_stats(model, size, rt, args, min_seconds=args.cpu_latency_min_s)
                out[f"cpu {threads}t {name}"] = stats
    finally:
        torch.set_num_threads(saved)
    return out


def section_latency(args: argparse.Namespace, models: Models, device: torch.device, budget: Budget) -> None:
    size = args.latency_img_size
    print(f"\n3. Batch-1 latency, {size} px, ms (median of >= {args.latency_runs} synchronised runs and "
          f">= {args.latency_min_s} s after 10 warm-up runs; lower is better). fp32 / bf16+cl amp: the harness's "
          "measure_latency (--amp off / CUDA default); fp16, fp16+cl: fp16 weights, eager; graph *: "
          "weights in that dtype, forward replayed from a CUDA graph (input copied in). 1st call: the first "
          "forward of a fresh copy (graph: its capture with 3 warm-up calls)", flush=True)
    header_done = False
    for name in args.models:
        if not budget.allows("latency", f"latency of {name} and later models"):
            break
        say(f"latency {name}")
        spec = models.spec(name)
        base = models.fresh(name, size).eval()
        gpu, first = gpu_latency_variants(base, size, device, args)
        cpu: dict[str, Any] = {}
        if name in args.cpu_latency_models:
            cpu = cpu_latency(base, spec, size, args)
        record("latency", name, {"img_size": size, "variants": gpu, "first_call_ms": first, "cpu": cpu})
        cols = list(gpu)
        if not header_done:
            print(f"  {'model':<26}" + "".join(f"{c:>14}" for c in cols), flush=True)
            header_done = True
        print(table_row(name, [v.get("latency_ms", "err") for v in gpu.values()], ".2f", 14), flush=True)
        print(table_row("  IQR ms", [v.get("latency_iqr_ms") for v in gpu.values()], ".2f", 14), flush=True)
        print(table_row("  1st call ms", [first.get(c) for c in cols], ".1f", 14), flush=True)
        for label, stats in cpu.items():
            print(f"  {'  ' + label:<26}{stats['latency_ms']:>14.2f}  (IQR {stats['latency_iqr_ms']:.2f}, "
                  f"{stats['latency_runs']} runs)", flush=True)
        free_memory()


# ---------------------------------------------------------------- sections 1 and 2: training and inference


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def section_train_infer(args: argparse.Namespace, models: Models, data: Any, device: torch.device,
                        budget: Budget) -> None:
    sync = synchronizer(device)
    names = list(args.variants)
    cuda = device.type == "cuda"
    print(f"\n1./2. Training step and inference per variant, {data.img_size} px. train: ms per Trainer.step "
          f"(median of {args.rounds} interleaved rounds x 2 batches after a warm-up round); 1st/2nd step: "
          "from a fresh model, synchronised; peak: extra GiB allocated in the 1st step; infer: images/s at "
          f"batch {args.infer_batch} (median of {args.rounds} rounds); 1st infer: ms of the first batch. "
          "fp32 = TF32 off, tf32 = TF32 on (matmul and cuDNN); bf16/fp16 autocast with torch's default flags "
          f"(matmul TF32 {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 {torch.backends.cudnn.allow_tf32}); "
          "fp16 steps go through the harness's GradScaler", flush=True)
    if not cuda:
        print("  (cpu: the TF32 flags change nothing here; fp16 autocast on CPU has no scaler)", flush=True)
    header = f"  {'model':<26}" + "".join(f"{n:>11}" for n in names) + f"{'fastest':>11}"
    for name in args.models:
        if not budget.allows("train", f"training/inference of {name} and later models"):
            break
        spec = models.spec(name)
        settings = spec.train
        say(f"train {name}: batch {settings.batch_size}, building")
        base = models.fresh(name, data.img_size)
        generator = torch.Generator().manual_seed(0)
        batches = list(itertools.islice(train_batches(data, settings.batch_size, generator), 3))
        trainers: dict[str, tuple[Trainer, bool | None]] = {}
        first: dict[str, Any] = {}
        second: dict[str, Any] = {}
        peak: dict[str, Any] = {}
        for variant in names:
            amp, channels_last, tf32 = VARIANTS[variant]
            rt = Runtime(device, amp, channels_last=channels_last)
            try:
                with tf32_mode(tf32):
                    model = rt.prepare_model(copy.deepcopy(base)).train()
                    trainer = Trainer(model, data, settings, rt)
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                        before = torch.cuda.memory_allocated(device)
                    first[variant] = timed(lambda t=trainer, b=batches[0]: t.step(*b), sync)
                    if cuda:
                        peak[variant] = (torch.cuda.max_memory_allocated(device) - before) / 2**30
                    second[variant] = timed(lambda t=trainer, b=batches[1]: t.step(*b), sync) * 1e3
                trainers[variant] = (trainer, tf32)
                say(f"  {name} {variant}: 1st step {first[variant]:.2f} s, 2nd {second[variant]:.1f} ms")
            except Exception as exc:
                first[variant] = "err"
                say(f"  {name} {variant}: {short_error(exc)}")
                free_memory()
        step_ms: dict[str, Any] = {}
        if trainers and budget.left() > budget.keep("train") / 2:
            try:
                medians = interleaved_medians(
                    {v: under_tf32(lambda b, t=t: t.step(*b), tf) for v, (t, tf) in trainers.items()},
                    batches[1:3], args.rounds, sync)
                step_ms = {v: s * 1e3 for v, s in medians.items()}
            except Exception as exc:
                say(f"  {name} interleaved training: {short_error(exc)}")
        # Inference on the same models, now in eval mode.
        x = torch.randn(args.infer_batch, 3, data.img_size, data.img_size, device=device)
        first_infer: dict[str, Any] = {}
        runners = {}
        for variant, (trainer, tf32) in trainers.items():
            model, rt = trainer.model.eval(), trainer.runtime

            def forward(inp: torch.Tensor, model: nn.Module = model, rt: Runtime = rt) -> object:
                with torch.inference_mode(), rt.autocast():
                    return model(rt.to_model(inp))

            runners[variant] = under_tf32(forward, tf32)
            try:
                first_infer[variant] = timed(lambda r=runners[variant], x=x: r(x), sync) * 1e3
            except Exception as exc:
                first_infer[variant] = "err"
                runners.pop(variant)
                say(f"  {name} {variant} inference: {short_error(exc)}")
        rate: dict[str, Any] = {}
        if runners and budget.left() > budget.keep("train") / 2:
            try:
                rate = {v: args.infer_batch / s for v, s in interleaved_medians(runners, [x], args.rounds, sync).items()}
            except Exception as exc:
                say(f"  {name} interleaved inference: {short_error(exc)}")
        record("train", name, {"img_size": data.img_size, "batch": settings.batch_size, "step_ms": step_ms,
                               "first_step_s": first, "second_step_ms": second, "first_step_peak_gib": peak,
                               "infer_batch": args.infer_batch, "infer_img_s": rate, "first_infer_ms": first_infer})
        fastest_train = min(step_ms, key=step_ms.get) if step_ms else "-"
        fastest_infer = max(rate, key=rate.get) if rate else "-"
        print(header, flush=True)
        print(table_row(f"{name} train ms", [step_ms.get(n) for n in names], ".1f") + f"{fastest_train:>11}")
        print(table_row("  1st step s", [first.get(n) for n in names], ".2f"))
        print(table_row("  2nd step ms", [second.get(n) for n in names], ".1f"))
        if peak:
            print(table_row("  1st step peak GiB", [peak.get(n) for n in names], ".2f"))
        print(table_row("  infer img/s", [rate.get(n) for n in names], ".0f") + f"{fastest_infer:>11}")
        print(table_row("  1st infer ms", [first_infer.get(n) for n in names], ".1f"), flush=True)
        trainers.clear()
        runners.clear()
        free_memory()


# ---------------------------------------------------------------- section 4: harness vs bare loop


def bare_loop(model: nn.Module, data: Any, rt: Runtime, settings: Any, clip: float | None
              ) -> Callable[[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], None]:
    """The textbook step in the same precision: autocast, cross-entropy, fused AdamW (and GradScaler for fp16)."""
    device = rt.device
    labels = data.splits["train"].labels
    fused = device.type in ("cuda", "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                            **({"fused": True} if fused else {}))
    scaler = rt.grad_scaler()

    def step(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        with rt.numerics():  # TF32 as Trainer.step sets it: around the backward pass too, not only the forward
            body(batch)

    def body(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        idx, _, images = batch
        x = rt.to_model(data.normalise(images, device))
        y = labels[idx].to(device, non_blocking=True)
        with rt.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
            opt.step()

    return step


def section_harness(args: argparse.Namespace, models: Models, data: Any, device: torch.device,
                    budget: Budget) -> None:
    sync = synchronizer(device)
    runtime = resolve_runtime(args.device, args.amp)
    print(f"\n4. Harness (Trainer.step) vs bare loop, {data.img_size} px, --amp {args.amp}. per step: median of "
          f"{args.rounds} interleaved rounds x 3 batches, synchronised around every step; blocks: ms per step of "
          f"{args.rounds} interleaved blocks of one epoch's batches back to back, one synchronise per block. "
          "ratio = bare / harness (target >= 0.9)", flush=True)
    print(f"  {'model':<17}{'precision':>10}{'batch':>6}{'| step: bare':>12}{'+clip':>8}{'harness':>9}{'ratio':>7}"
          f"{'| block: bare':>14}{'+clip':>8}{'harness':>9}{'ratio':>7}{'harness img/s':>15}", flush=True)
    for name in args.models:
        if not budget.allows("harness", f"harness vs bare of {name} and later models"):
            break
        spec = models.spec(name)
        rt = runtime.for_model(spec)
        settings = spec.train
        say(f"harness vs bare {name} ({rt.precision})")
        try:
            base = models.fresh(name, data.img_size)
            harness_model = rt.prepare_model(copy.deepcopy(base)).train()
            trainer = Trainer(harness_model, data, settings, rt)
            bare = bare_loop(rt.prepare_model(copy.deepcopy(base)).train(), data, rt, settings, None)
            clipped = bare_loop(rt.prepare_model(copy.deepcopy(base)).train(), data, rt, settings, settings.grad_clip)
            del base
            generator = torch.Generator().manual_seed(0)
            epoch = list(train_batches(data, settings.batch_size, generator))
            steps = {"bare": bare, "bare+clip": clipped, "harness": lambda b, t=trainer: t.step(*b)}
            per_step = interleaved_medians(steps, epoch[:3], args.rounds, sync)
            blocks = interleaved_medians({k: (lambda blk, f=f: [f(b) for b in blk]) for k, f in steps.items()},
                                         [epoch], args.rounds, sync)
            block_ms = {k: s * 1e3 / len(epoch) for k, s in blocks.items()}
            step_ms = {k: s * 1e3 for k, s in per_step.items()}
            images = sum(len(b[0]) for b in epoch) / len(epoch)
            values = {"precision": rt.precision, "batch": settings.batch_size, "step_ms": step_ms,
                      "block_ms_per_step": block_ms, "step_ratio": step_ms["bare"] / step_ms["harness"],
                      "block_ratio": block_ms["bare"] / block_ms["harness"],
                      "harness_img_s": images / block_ms["harness"] * 1e3}
            record("harness", name, values)
            print(f"  {name:<17}{rt.precision:>10}{settings.batch_size:>6}{step_ms['bare']:>12.1f}"
                  f"{step_ms['bare+clip']:>8.1f}{step_ms['harness']:>9.1f}{values['step_ratio']:>7.3f}"
                  f"{block_ms['bare']:>14.1f}{block_ms['bare+clip']:>8.1f}{block_ms['harness']:>9.1f}"
                  f"{values['block_ratio']:>7.3f}{values['harness_img_s']:>15.0f}", flush=True)
        except Exception as exc:
            say(f"  {name}: {short_error(exc)}")
            traceback.print_exc(limit=3)
        finally:
            trainer = bare = clipped = steps = None  # type: ignore[assignment]
            free_memory()


# ---------------------------------------------------------------- section 5: GPU utilisation


class UtilSampler:
    """GPU utilisation (% of time a kernel ran) from ``nvidia-smi --loop-ms`` and ``torch.cuda.utilization``."""

    def __init__(self, device: torch.device, period_ms: int) -> None:
        self.device, self.period = device, period_ms
        self.smi: list[tuple[float, float]] = []
        self.nvml: list[tuple[float, float]] = []
        self.stop_event = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        smi = shutil.which("nvidia-smi")
        if smi:
            cmd = [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"--loop-ms={self.period}"]
            if torch.cuda.device_count() > 1 or os.environ.get("CUDA_VISIBLE_DEVICES"):
                with contextlib.suppress(Exception):  # nvidia-smi numbers GPUs its own way: name ours by UUID
                    uuid = str(torch.cuda.get_device_properties(self.device).uuid)
                    cmd.append(f"--id={uuid if uuid.startswith('GPU-') else 'GPU-' + uuid}")
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.threads.append(threading.Thread(target=self._read_smi, daemon=True))
        self.threads.append(threading.Thread(target=self._poll_nvml, daemon=True))
        for t in self.threads:
            t.start()

    def _read_smi(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.smi.append((elapsed(), float(line.strip())))

    def _poll_nvml(self) -> None:
        while not self.stop_event.wait(self.period / 1e3):
            try:
                self.nvml.append((elapsed(), float(torch.cuda.utilization(self.device))))
            except Exception:
                return

    def stop(self) -> None:
        self.stop_event.set()
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        for t in self.threads:
            t.join(timeout=5)

    @staticmethod
    def summary(samples: list[tuple[float, float]], t0: float, t1: float) -> dict[str, float] | None:
        values = [v for t, v in samples if t0 <= t <= t1]
        if not values:
            return None
        return {"mean": statistics.fmean(values), "median": statistics.median(values), "min": min(values),
                "samples": len(values)}


def section_util(args: argparse.Namespace, models: Models, data: Any, device: torch.device, budget: Budget) -> None:
    name = args.util_model
    print(f"\n5. GPU utilisation during {args.util_seconds:.0f} s of {name} training at {data.img_size} px "
          f"(harness, fastest section-1 variant), then {args.util_seconds / 2:.0f} s of the bare loop; "
          f"sampled every {args.util_period_ms} ms (target: harness mean >= 70%)", flush=True)
    if device.type != "cuda":
        if name not in args.models:
            print(f"  (cpu: skipped, no GPU to sample; with {name} in --models the loops run, unsampled)", flush=True)
            return
        print("  (cpu: no GPU to sample; the loops run as a smoke test)", flush=True)
    if name not in [*models.registry.teachers, *models.registry.students]:
        print(f"  (unknown model {name}: skipped)", flush=True)
        return
    if not budget.allows("util", "GPU utilisation"):
        return
    step_ms = RESULTS.get("train", {}).get(name, {}).get("step_ms") or {}
    default = resolve_runtime(args.device, args.amp).for_model(models.spec(name))
    if step_ms:
        variant = min(step_ms, key=step_ms.get)
        amp, channels_last, tf32 = VARIANTS[variant]
        rt = Runtime(device, amp, channels_last=channels_last)
    else:
        variant, rt, tf32 = f"{default.precision} (harness default; section 1 has no {name} figures)", default, None
    spec = models.spec(name)
    sync = synchronizer(device)
    results: dict[str, Any] = {"variant": variant}
    say(f"utilisation {name} in {variant}")
    try:
        with tf32_mode(tf32):
            base = models.fresh(name, data.img_size)
            loops = {"harness": Trainer(rt.prepare_model(copy.deepcopy(base)).train(), data, spec.train, rt)}
            bare = bare_loop(rt.prepare_model(base).train(), data, rt, spec.train, None)
            for label, seconds in (("harness", args.util_seconds), ("bare", args.util_seconds / 2)):
                step = (lambda b, t=loops["harness"]: t.step(*b)) if label == "harness" else bare
                generator = torch.Generator().manual_seed(1)
                for b in itertools.islice(train_batches(data, spec.train.batch_size, generator), 2):
                    step(b)  # warm-up
                sync()
                sampler = UtilSampler(device, args.util_period_ms)
                sampler.start()
                t0 = elapsed()
                images = steps = 0
                while elapsed() - t0 < seconds:
                    for b in train_batches(data, spec.train.batch_size, generator):
                        step(b)
                        images += len(b[0])
                        steps += 1
                        if elapsed() - t0 >= seconds:
                            break
                sync()
                t1 = elapsed()
                sampler.stop()
                skip = min(0.5, (t1 - t0) / 4)  # nvidia-smi's first samples can predate the loop
                results[label] = {"seconds": t1 - t0, "steps": steps, "img_s": images / (t1 - t0),
                                  "nvidia_smi": UtilSampler.summary(sampler.smi, t0 + skip, t1),
                                  "torch_cuda_utilization": UtilSampler.summary(sampler.nvml, t0 + skip, t1)}
                smi, nvml = results[label]["nvidia_smi"], results[label]["torch_cuda_utilization"]
                print(f"  {label:<8} {steps} steps, {images / (t1 - t0):.0f} img/s, {(t1 - t0) / steps * 1e3:.1f} ms/step; "
                      + (f"nvidia-smi util mean {smi['mean']:.1f}% median {smi['median']:.0f}% min {smi['min']:.0f}% "
                         f"({smi['samples']} samples)" if smi else "nvidia-smi: no samples")
                      + (f"; torch.cuda.utilization mean {nvml['mean']:.1f}% median {nvml['median']:.0f}% "
                         f"({nvml['samples']})" if nvml else "; torch.cuda.utilization: no samples"), flush=True)
                record("util", name, results)
    except Exception as exc:
        say(f"  utilisation: {short_error(exc)}")
        traceback.print_exc(limit=3)
    finally:
        loops = bare = None  # type: ignore[assignment]
        free_memory()


# ---------------------------------------------------------------- section 3b: torch.compile, in a child process


def compile_child(args: argparse.Namespace) -> None:
    """Run in a child process: compile the deployed model per mode, print one RESULT line per mode."""
    device = resolve_runtime(args.device, "off").device
    registry = load_registry()
    spec = registry.teachers.get(args.compile_model) or registry.students[args.compile_model]
    num_classes = registry.datasets["synthetic-cxr"].num_classes
    size = args.latency_img_size
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.compile_dtype]
    torch.manual_seed(0)
    base = spec.build(num_classes, size).eval()
    plain = Runtime(device)
    sync = synchronizer(device)
    for mode in args.compile_modes:
        try:
            torch._dynamo.reset()
            model = Deployed(copy.deepcopy(base).to(device).eval(), dtype, args.compile_channels_last)
            compiled = torch.compile(model, mode=None if mode == "default" else mode)
            with torch.inference_mode():  # an inference tensor, like measure_latency's: no recompile there
                x = torch.randn(1, 3, size, size, device=device)
                first = timed(lambda c=compiled, x=x: c(x), sync)
                second = timed(lambda c=compiled, x=x: c(x), sync)
            print(f"  compile {mode}: first call {first:.1f} s, second {second * 1e3:.1f} ms", flush=True)
            stats = latency_stats(compiled, size, plain, args)
            print("RESULT " + json.dumps({"mode": mode, "dtype": args.compile_dtype, "first_call_s": first,
                                          "second_call_ms": second * 1e3, **stats}), flush=True)
        except Exception as exc:
            print("RESULT " + json.dumps({"mode": mode, "error": short_error(exc)}), flush=True)
        free_memory()


def section_compile(args: argparse.Namespace, device: torch.device, budget: Budget) -> None:
    name = args.compile_model
    print(f"\n3b. torch.compile of {name}'s deployed {args.compile_dtype} model at batch 1, "
          f"{args.latency_img_size} px: modes {', '.join(args.compile_modes)} in one child process, capped at "
          f"min(--compile-cap-s {args.compile_cap_s:.0f}, budget left); first call = compile time (cold cache)", flush=True)
    if device.type != "cuda" and not args.compile_on_cpu:
        print("  (cpu: skipped; --compile-on-cpu runs it anyway)", flush=True)
        return
    cap = min(args.compile_cap_s, budget.left() - budget.keep("compile"))
    if cap < 20:
        say(f"SKIPPED torch.compile: {budget.left():.0f} s of --budget-s left")
        return
    cmd = [sys.executable, os.path.abspath(__file__), "--compile-child", "--device", args.device,
           "--compile-model", name, "--compile-modes", ",".join(args.compile_modes),
           "--compile-dtype", args.compile_dtype, "--latency-img-size", str(args.latency_img_size),
           "--latency-runs", str(args.latency_runs), "--latency-min-s", str(args.latency_min_s)]
    if args.compile_channels_last:
        cmd.append("--compile-channels-last")
    say(f"compile child, cap {cap:.0f} s")
    results: list[dict[str, Any]] = []
    # Its own session, so a timeout ends it and inductor's compile workers by the child's process group.
    global CHILD
    # A cold inductor/Triton cache, as on a fresh machine: the first call's time is the whole compile.
    cache = tempfile.mkdtemp(prefix="bench_gpu_inductor_")
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": os.path.join(cache, "triton")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    CHILD = proc

    def relay() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                with contextlib.suppress(json.JSONDecodeError):
                    results.append(json.loads(line[7:]))
            print(f"  | {line.rstrip()}", flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    started = time.perf_counter()
    try:
        proc.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        say(f"  compile child still running after {cap:.0f} s: stopped (modes without a RESULT did not finish)")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    CHILD = None
    reader.join(timeout=5)
    shutil.rmtree(cache, ignore_errors=True)
    RESULTS["compile"] = {"model": name, "wall_s": time.perf_counter() - started, "cap_s": cap, "modes": results}
    save()
    for r in results:
        if "error" in r:
            print(f"  {r['mode']:<28} error: {r['error']}", flush=True)
        else:
            print(f"  {r['mode']:<28} compile (1st call) {r['first_call_s']:6.1f} s   latency {r['latency_ms']:.2f} ms "
                  f"(IQR {r['latency_iqr_ms']:.2f}, {r['latency_runs']} runs)", flush=True)


# ---------------------------------------------------------------- summary


def spec_choice(variant: str) -> str:
    """A variant name as the model spec fields that select it under ``--amp auto`` on CUDA."""
    precision, _, layout = variant.partition("+")
    return f"gpu_precision={precision!r}, gpu_channels_last={layout == 'cl'}"


def summary(args: argparse.Namespace) -> None:
    print("\nSummary against issue 20's targets", flush=True)
    harness = RESULTS.get("harness", {})
    for name, v in harness.items():
        print(f"  harness/bare {name:<16} block {v['block_ratio']:.3f}, per step {v['step_ratio']:.3f} "
              f"(target >= 0.9): {'PASS' if v['block_ratio'] >= 0.9 else 'MISS'}")
    for name, v in RESULTS.get("util", {}).items():
        smi = (v.get("harness") or {}).get("nvidia_smi")
        if smi:
            print(f"  GPU utilisation {name} ({v['variant']}): mean {smi['mean']:.1f}% (target >= 70%): "
                  f"{'PASS' if smi['mean'] >= 70 else 'MISS'}")
    for name, v in RESULTS.get("latency", {}).items():
        gpu = {k: s["latency_ms"] for k, s in v["variants"].items() if "latency_ms" in s}
        if name == args.compile_model:
            for r in RESULTS.get("compile", {}).get("modes", []):
                if "latency_ms" in r:
                    gpu[f"compile {r['mode']}"] = r["latency_ms"]
        if not gpu:
            continue
        best = min(gpu, key=gpu.get)
        line = f"  batch-1 {name:<16} best {best} {gpu[best]:.2f} ms (eager fp32 {gpu.get('fp32', float('nan')):.2f})"
        cpu = {k: s["latency_ms"] for k, s in v.get("cpu", {}).items()}
        if cpu:
            best_cpu = min(cpu, key=cpu.get)
            two = min((s for k, s in cpu.items() if k.startswith("cpu 2t")), default=None)
            line += f"; CPU best {best_cpu} {cpu[best_cpu]:.2f} ms"
            if two is not None:
                line += f", 2 threads {two:.2f} ms: GPU below 2-thread CPU {'PASS' if gpu[best] < two else 'MISS'}"
        print(line)
    for name, v in RESULTS.get("train", {}).items():
        firsts = {k: s for k, s in v["first_step_s"].items() if isinstance(s, float)}
        if firsts and v["step_ms"]:
            slow = max(firsts, key=firsts.get)
            fast = min(v["step_ms"], key=v["step_ms"].get)
            print(f"  training {name:<16} fastest {fast} {v['step_ms'][fast]:.1f} ms/step; slowest first step "
                  f"{slow} {firsts[slow]:.2f} s")
            print(f"    spec choice for {name}: {spec_choice(fast)}")
    print(f"\nDone in {elapsed():.0f} s", flush=True)


# ---------------------------------------------------------------- main


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(device),
                           "cudnn_benchmark": torch.backends.cudnn.benchmark,
                           "matmul_tf32_default": torch.backends.cuda.matmul.allow_tf32,
                           "cudnn_tf32_default": torch.backends.cudnn.allow_tf32}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({"gpu": props.name, "sms": props.multi_processor_count, "memory_gib": props.total_memory / 2**30,
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return env


def cuda_init(device: torch.device) -> float:
    """Context, cuBLAS and cuDNN handles: process-wide one-offs, timed apart from every variant's first step."""
    start = time.perf_counter()
    if device.type == "cuda":
        conv = nn.Conv2d(3, 8, 3).to(device)
        x = torch.randn(2, 3, 16, 16, device=device)
        (conv(x).sum() + (torch.randn(8, 8, device=device) @ torch.randn(8, 8, device=device)).sum()).backward()
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=MODELS, help=f"comma-separated (default {MODELS})")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench_gpu.log and bench_gpu.json")
    parser.add_argument("--budget-s", type=float, default=380.0, help="wall seconds; later sections are skipped past it")
    parser.add_argument("--img-size", type=int, default=224, help="training / inference / harness / util size")
    parser.add_argument("--n-train", type=int, default=256, help="synthetic-cxr training images")
    parser.add_argument("--rounds", type=int, default=3, help="timed interleaved rounds (after one warm-up round)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="training/inference variants")
    parser.add_argument("--infer-batch", type=int, default=128)
    parser.add_argument("--amp", default="auto", help="the harness's --amp for section 4 (and 5's fallback)")
    parser.add_argument("--latency-img-size", type=int, default=64)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--latency-min-s", type=float, default=0.4)
    parser.add_argument("--cpu-latency-models", default="ofa-595")
    parser.add_argument("--cpu-latency-min-s", type=float, default=1.0)
    parser.add_argument("--util-model", default="vgg19")
    parser.add_argument("--util-seconds", type=float, default=10.0)
    parser.add_argument("--util-period-ms", type=int, default=100)
    parser.add_argument("--compile-model", default="ofa-595")
    parser.add_argument("--compile-modes", default="reduce-overhead,max-autotune-no-cudagraphs",
                        help="torch.compile modes, in order ('default' for mode=None)")
    parser.add_argument("--compile-dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    parser.add_argument("--compile-channels-last", action="store_true")
    parser.add_argument("--compile-cap-s", type=float, default=150.0)
    parser.add_argument("--compile-on-cpu", action="store_true", help="run section 3b on --device cpu too")
    parser.add_argument("--sections", default="latency,train,harness,util,compile")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True "
                        "(the harness leaves it off)")
    parser.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    args.cpu_latency_models = [m for m in args.cpu_latency_models.split(",") if m]
    args.compile_modes = [m for m in args.compile_modes.split(",") if m]
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    global OUT, LOG
    args = parse_args(argv)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile_child:
        compile_child(args)
        return
    if args.out is not None:
        OUT = args.out
        OUT.mkdir(parents=True, exist_ok=True)
        LOG = open(OUT / "bench_gpu.log", "a", buffering=1)  # noqa: SIM115 - open for the whole run
        sys.stdout = Tee(sys.__stdout__, LOG)
        sys.stderr = Tee(sys.__stderr__, LOG)
    signal.signal(signal.SIGTERM, on_sigterm)
    budget = Budget(args.budget_s)
    keep_freed_memory()  # as the CLI does (CPU latency)
    device = resolve_runtime(args.device, "off").device
    say(f"bench_gpu: {' '.join(sys.argv[1:])}")
    init_s = cuda_init(device)
    RESULTS["env"] = environment(device) | {"cuda_init_s": init_s, "argv": sys.argv[1:]}
    print("  " + ", ".join(f"{k}={v}" for k, v in RESULTS["env"].items() if k != "argv"), flush=True)
    say(f"process CUDA init (context, cuBLAS, cuDNN handles): {init_s:.2f} s")
    registry = load_registry()
    models = Models(registry, registry.datasets["synthetic-cxr"].num_classes)
    where = {"medkd_bench": sys.modules[Trainer.__module__].__file__}
    for kind in ("teachers", "students"):
        for name, spec in getattr(registry, kind).items():
            if not spec.build.__module__.startswith(Trainer.__module__.split(".")[0]):  # not a library builder
                where[name] = getattr(sys.modules.get(spec.build.__module__), "__file__", spec.build.__module__)
    RESULTS["env"]["code_from"] = where
    say("code from: " + ", ".join(f"{k} {v}" for k, v in where.items()))
    missing = [m for m in args.models if m not in registry.teachers and m not in registry.students]
    if missing:
        say(f"unknown model(s) {missing}: left out (registered: {sorted([*registry.teachers, *registry.students])})")
        args.models = [m for m in args.models if m not in missing]
    save()
    if "latency" in args.sections:
        run_section("latency", lambda: section_latency(args, models, device, budget))
    data = None
    if any(s in args.sections for s in ("train", "harness", "util")):
        start = time.perf_counter()
        data = prepare(registry.datasets["synthetic-cxr"], args.img_size, None,
                       {"n_train": args.n_train, "n_val": 8, "n_test": 8})
        say(f"synthetic-cxr: {args.n_train} training images at {args.img_size} px in {time.perf_counter() - start:.1f} s")
    if "train" in args.sections:
        run_section("train", lambda: section_train_infer(args, models, data, device, budget))
    if "harness" in args.sections:
        run_section("harness", lambda: section_harness(args, models, data, device, budget))
    if "util" in args.sections:
        run_section("util", lambda: section_util(args, models, data, device, budget))
    if "compile" in args.sections:
        run_section("compile", lambda: section_compile(args, device, budget))
    summary(args)


def on_sigterm(signum: int, frame: Any) -> None:
    """`timeout`'s SIGTERM: end the compile child's process group, log where we were, then die as before."""
    if CHILD is not None and CHILD.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(CHILD.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):  # the signal may have come in the middle of a write
        print(f"\n[{elapsed():6.1f}s] SIGTERM: stopped here (figures so far are in the log and the JSON next to it)",
              flush=True)
        faulthandler.dump_traceback(file=LOG or sys.__stderr__, all_threads=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def run_section(name: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        say(f"section {name} failed:")
        traceback.print_exc()
    free_memory()


if __name__ == "__main__":
    main()
