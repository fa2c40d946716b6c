"""Issue 20's GPU check: every target, PASS or MISS, in one command of at most 8 minutes.

Steps, in order (the targets' inputs first, the 224 px matrix, which has none of its own, last):

1. ``medkd-bench run --matrix quick`` and ``--matrix full`` at 64 px, each in a fresh work dir under
   ``--out``, then the finished full matrix again (the rerun; the quick one if full did not finish).
2. ofa-595's batch-1 latency from the full matrix's store (``latency_deployed_ms``, else the eager
   ``latency_ms``) against the CPU of this machine, timed here with all cores.
3. Harness (``Trainer.step``) vs a bare loop at 224 px per model, each in its spec's GPU precision,
   and GPU utilisation during VGG19 training: ``bench_gpu.py``'s sections, imported.
4. A 224 px matrix on synthetic-cxr with 2,000 training images; per-cell phase times from its store.

Warm-up (``warmup_s`` of every cell of every store) is judged at the end. Each step runs only if what
is left of ``--budget-s``, less the least the later steps need, covers its own least; a matrix runs
under a timeout of what it may use, and a killed matrix keeps its finished cells. Everything printed
goes to OUT/gpu_check.log, the figures to OUT/gpu_check.json (rewritten after every step), so a run
killed part way still leaves both. ``--device cpu`` is a smoke test: tiny data at 32 px, one teacher
and one method, the "full" matrix on synthetic-histo alone, ofa-595 only; the CUDA-only utilisation step
is skipped with a note.

Usage: python benchmarks/gpu_check.py --out LOGDIR [--device cuda] [--budget-s 440]
       python benchmarks/gpu_check.py --out LOGDIR --device cpu        # smoke test, about a minute
Exit codes: 0 the check ran to the end (MISSes included), 1 a step raised, 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_gpu as bg
import torch

import medkd_bench
from medkd_bench.data.prepare import prepare
from medkd_bench.errors import MedkdError
from medkd_bench.registry import load_registry
from medkd_bench.run.store import CellRecord, Store, StoreError
from medkd_bench.runtime.device import resolve_runtime

#: The order steps run in; the budget keeps each later step's least share (``Mode.steps``) free.
ORDER = ("quick", "full", "rerun", "latency", "harness", "util", "m224")
STUDENT = "ofa-595"
#: Smoke runs: tests/helpers.py's TINY_DATA, one teacher, fewer explanation images (the suite's time is short):
#: teachers on the students' images (the full matrix's default would train them on 6-9 times as many), and
#: explained by Grad-CAM (Score-CAM's one forward pass per channel was most of each smoke cell's scoring;
#: the GPU mode keeps the default explainer, and tests/test_explainers.py runs Score-CAM on every model).
TINY_RUN = ("--latency-runs", "3", "--latency-seconds", "0", "--latency-attempts", "1", "--explain-images", "1", "--sanity-images", "0", "--jobs", "1",
            "--teachers", "visformer-s", "--explainers", "grad-cam", "--dataset-option", "synthetic-cxr.n_val=9",
            "--dataset-option", "synthetic-cxr.n_test=9", "--dataset-option", "synthetic-cxr.teacher_train_factor=1")
TINY = ("--img-size", "32", "--epochs", "1", "--dataset-option", "synthetic-cxr.n_train=24", *TINY_RUN)
TINY_HISTO = ("--dataset-option", "synthetic-histo.n_train=20", "--dataset-option", "synthetic-histo.n_val=10",
              "--dataset-option", "synthetic-histo.n_test=10", "--dataset-option", "synthetic-histo.teacher_train_factor=1")


@dataclass(frozen=True)
class Mode:
    """What each step runs on a device: the GPU's real settings or the CPU smoke test's tiny ones."""

    cli: tuple[str, ...]  # every `medkd-bench run` gets these
    quick: tuple[str, ...]
    full: tuple[str, ...]
    m224: tuple[str, ...]  # the 224 px matrix, less n_train and epochs (options of this script)
    m224_size: int
    m224_n_train: int  # unless --n-train-224
    scale: str  # the quick and full matrices' size, for the log
    models: str  # harness vs bare loop
    img_size: int  # harness and utilisation
    n_train: int  # their training images
    rounds: int
    util_seconds: float
    per_model_s: float  # an in-process step starts no model with less than this left
    cpu_latency_min_s: float
    steps: dict[str, tuple[float, float]] = field(default_factory=dict)  # step -> (least, most) seconds


M224 = ("--matrix", "full", "--datasets", "synthetic-cxr", "--methods", "kd")
GPU = Mode(cli=("--device", "cuda"), quick=("--matrix", "quick"), full=("--matrix", "full"), m224=M224,
           m224_size=224, m224_n_train=2000, scale="64 px", models=bg.MODELS, img_size=224, n_train=256, rounds=3, util_seconds=10.0,
           per_model_s=12.0, cpu_latency_min_s=1.0,
           steps={"quick": (40, 110), "full": (60, 150), "rerun": (10, 30), "latency": (8, 20),
                  "harness": (40, 90), "util": (20, 30), "m224": (40, 150)})
SMOKE = Mode(cli=("--device", "cpu"), quick=("--matrix", "quick", *TINY),
             full=("--matrix", "full", "--methods", "kd", "--datasets", "synthetic-histo", *TINY, *TINY_HISTO),
             m224=(*M224, *TINY_RUN), m224_size=32, m224_n_train=24, scale="tiny, 32 px", models=STUDENT, img_size=32, n_train=32, rounds=1,
             util_seconds=1.0, per_model_s=1.0, cpu_latency_min_s=0.2,
             steps={name: (1, 900) for name in ORDER})  # on a busy CPU: as long as the budget allows

RESULTS: dict[str, Any] = {"mode": "gpu", "steps": {}, "targets": {}}
OUT = Path(".")


# ---------------------------------------------------------------- output, targets, budget


def save() -> None:
    """The JSON is rewritten after every step and target: a killed run leaves what it had."""
    (OUT / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))


def judge(key: str, ok: bool | None, value: str, note: str = "") -> None:
    """Record one target and print it now; ``ok`` None means not measured (a MISS, with ``value`` saying why)."""
    verdict = "PASS" if ok else "MISS"
    if ok is not None and RESULTS["mode"] == "smoke":
        note = (note + "; " if note else "") + "cpu smoke: not a GPU figure"
    entry = RESULTS["targets"][key]
    entry |= {"verdict": verdict, "value": value, "note": note}
    bg.say(f"-> {verdict}  {entry['label']}: {value} (target {entry['target']})" + (f" [{note}]" if note else ""))
    save()


def pending(key: str, label: str, target: str) -> None:
    """A target not reached yet: a MISS in the JSON until a step measures it."""
    RESULTS["targets"][key] = {"label": label, "verdict": "MISS", "value": "not run", "target": target, "note": ""}


TARGETS = {"full": ("run --matrix full, 64 px, both embedded datasets: wall", "<= 60 s"),
           "rerun": ("rerun of a finished matrix: wall", "<= 5 s"),
           "latency": (f"{STUDENT} batch-1 latency, GPU vs this machine's CPU", "GPU < CPU"),
           "util": ("SM utilisation during vgg19 training at 224 px", ">= 70%"),
           "warmup": ("one-time warm-up of any cell", "<= 3 s")}


class Plan:
    """Seconds each step may take: the budget left, less the least every later step needs, capped."""

    def __init__(self, mode: Mode, budget_s: float) -> None:
        self.mode, self.budget_s = mode, budget_s

    def allowance(self, step: str) -> float | None:
        least, most = self.mode.steps[step]
        later = sum(self.mode.steps[s][0] for s in ORDER[ORDER.index(step) + 1:])
        allowed = min(most, self.budget_s - bg.elapsed() - later)
        return allowed if allowed >= least else None


class StepBudget(bg.Budget):
    """bench_gpu's per-model check against one step's deadline: no model starts with less than ``per_model_s``."""

    def __init__(self, deadline: float, per_model_s: float) -> None:
        super().__init__(deadline)
        self.per_model_s = per_model_s

    def keep(self, section: str) -> float:
        return self.per_model_s


@contextlib.contextmanager
def step(name: str, plan: Plan, what: str, targets: list[str]) -> Iterator[float]:
    """Run a step if the budget allows it (else its targets are MISS "skipped: budget"); time it; log errors."""
    allowed = plan.allowance(name)
    entry = RESULTS["steps"].setdefault(name, {"what": what, "start_s": bg.elapsed()})
    if allowed is None:
        bg.say(f"== {name}: SKIPPED, {plan.budget_s - bg.elapsed():.0f} s of --budget-s left ({what})")
        entry["skipped"] = "budget"
        for key in targets:
            judge(key, None, "skipped: budget")
        yield -1.0
        return
    bg.say(f"== {name}: {what} (may take {allowed:.0f} s)")
    save()
    start = time.perf_counter()
    try:
        yield allowed
    except Exception as exc:
        entry["error"] = bg.short_error(exc)
        RESULTS["failed_steps"] = [*RESULTS.get("failed_steps", []), name]
        bg.say(f"step {name} failed: {entry['error']}")
        traceback.print_exc()
    entry["wall_s"] = time.perf_counter() - start
    bg.say(f"== {name}: {entry['wall_s']:.1f} s")
    save()


# ---------------------------------------------------------------- matrices as child processes


def run_cli(args: list[str], timeout_s: float) -> dict[str, Any]:
    """`medkd-bench ARGS` as a child in its own process group, output relayed; Ctrl-C then kill at the timeout.

    Its current folder is --out: `python -m` puts that first on sys.path, not a checkout's medkd_bench.
    """
    cmd = [sys.executable, "-m", "medkd_bench", "run", *args]
    bg.say("$ medkd-bench run " + " ".join(args))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=OUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=os.environ | {"PYTHONUNBUFFERED": "1", "COLUMNS": "120"})
    bg.CHILD = proc  # bench_gpu's SIGTERM handler ends it with us

    def relay_output() -> None:  # into our log, line by line, as it comes
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"  | {line.rstrip()}", flush=True)

    relay = threading.Thread(target=relay_output, daemon=True)
    relay.start()
    timed_out = False
    try:
        proc.wait(timeout=max(timeout_s, 1.0))
    except subprocess.TimeoutExpired:
        timed_out = True
        bg.say(f"stopping it after {timeout_s:.0f} s (Ctrl-C, then kill after 5 s)")
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - start
    bg.CHILD = None
    relay.join(timeout=5)
    return {"args": args, "rc": proc.returncode, "wall_s": wall, "timed_out": timed_out}


def read_cells(work: Path) -> list[CellRecord]:
    """The cells of a matrix's store (none if it never got that far).

    Opened for writing, not read-only: a child killed at its timeout may leave a WAL file that
    only a writing connection recovers. The child has ended by the time this runs.
    """
    path = work / "runs.sqlite"
    if not path.exists():
        return []
    try:
        with Store(path) as store:
            return store.cells()
    except StoreError as exc:
        bg.say(f"store unreadable: {exc}")
        return []


def label(cell: CellRecord) -> str:
    if cell.method == "teacher":
        return f"{cell.dataset} teacher {cell.teacher}"
    if cell.method == "label-only":
        return f"{cell.dataset} label-only {cell.student}"
    return f"{cell.dataset} {cell.method} {cell.teacher}->{cell.student}"


def print_cells(cells: list[CellRecord]) -> list[dict[str, Any]]:
    """Per-cell, per-phase seconds from the store's ``timings``; returned as JSON-ready rows."""
    keys = ("setup_s", "warmup_s", "train_s", "score_s", "total_s", "train_images_per_s")
    print(f"  {'cell':<48}{'status':>8}" + "".join(f"{k.removesuffix('_s'):>10}" for k in keys[:-1])
          + f"{'train img/s':>12}", flush=True)
    for c in cells:
        print(f"  {label(c):<48}{c.status:>8}" + "".join(f"{bg.fmt(c.timings.get(k), '.2f'):>10}" for k in keys[:-1])
              + f"{bg.fmt(c.timings.get(keys[-1]), '.0f'):>12}", flush=True)
    return [{"cell": label(c), "status": c.status, **{k: c.timings.get(k) for k in keys}} for c in cells]


def matrix(name: str, plan: Plan, extra: tuple[str, ...], what: str) -> None:
    """One matrix in a fresh work dir under --out: wall time, cells done, per-phase table."""
    work = OUT / name
    with step(name, plan, what, ["full"] if name == "full" else []) as allowed:
        if allowed < 0:
            return
        shutil.rmtree(work, ignore_errors=True)
        args = [*plan.mode.cli, *extra, "--work-dir", str(work / "work"), "--leaderboard-dir", str(work / "leaderboards")]
        result = run_cli(args, allowed - 6)  # 6 s: the Ctrl-C grace and reading the store
        cells = read_cells(work / "work")
        done = sum(c.status == "done" for c in cells)
        result |= {"work_dir": str(work / "work"), "cells": len(cells), "done": done, "rows": print_cells(cells)}
        RESULTS["steps"][name] |= result
        bg.say(f"{name}: rc {result['rc']}, {result['wall_s']:.1f} s wall, {done}/{len(cells)} cells done"
               + (" (stopped at its timeout)" if result["timed_out"] else ""))
        if name == "full":
            finished = result["rc"] == 0 and not result["timed_out"]
            judge("full", finished and result["wall_s"] <= 60, f"{result['wall_s']:.1f} s, {done}/{len(cells)} cells done",
                  "" if finished else f"did not finish: rc {result['rc']}" + (", timed out" if result["timed_out"] else ""))


def rerun(plan: Plan) -> None:
    """The finished full matrix again (else the quick one): nothing to train, so only start-up and checks."""
    with step("rerun", plan, "the finished matrix again, same command", ["rerun"]) as allowed:
        if allowed < 0:
            return
        name = next((n for n in ("full", "quick") if RESULTS["steps"].get(n, {}).get("rc") == 0), None)
        if name is None:
            judge("rerun", None, "no finished matrix to rerun")
            return
        since = time.time()
        result = run_cli(RESULTS["steps"][name]["args"], allowed - 6)
        redone = [label(c) for c in read_cells(OUT / name / "work") if (c.finished_at or 0) >= since]
        RESULTS["steps"]["rerun"] |= result | {"of": name, "cells_recomputed": redone}
        ok = result["rc"] == 0 and not result["timed_out"] and result["wall_s"] <= 5
        judge("rerun", ok, f"{result['wall_s']:.1f} s ({name} matrix, {len(redone)} cells recomputed)",
              f"rc {result['rc']}" if result["rc"] else "")


# ---------------------------------------------------------------- in-process steps


def latency(plan: Plan, bargs: argparse.Namespace, registry: Any) -> None:
    """The student's GPU latency from the store against the CPU of this machine, same size, all cores."""
    with step("latency", plan, f"{STUDENT} batch-1 latency: store (GPU) vs CPU timed here", ["latency"]) as allowed:
        if allowed < 0:
            return
        cells = [c for n in ("full", "quick") for c in read_cells(OUT / n / "work")
                 if c.student == STUDENT and c.status == "done" and "latency_ms" in c.metrics]
        if not cells:
            judge("latency", None, f"no finished {STUDENT} cell with a latency")
            return
        cell = cells[0]
        size = cell.config["dataset"]["img_size"]
        figures = {k: v for k, v in cell.metrics.items() if k.startswith("latency") or k == "timed_on"}
        gpu_key = "latency_deployed_ms" if "latency_deployed_ms" in figures else "latency_ms"
        print("  store (" + label(cell) + "): " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
        spec = registry.get("student", STUDENT)
        base = bg.Models(registry, registry.datasets[cell.dataset].num_classes).fresh(STUDENT, size).eval()
        cpu = bg.cpu_latency(base, spec, size, bargs)
        threads = len(os.sched_getaffinity(0))
        for key, stats in cpu.items():
            print(f"  {key:<20}{stats['latency_ms']:8.2f} ms (IQR {stats['latency_iqr_ms']:.2f}, "
                  f"{stats['latency_runs']} runs, CPU share {stats.get('latency_cpu_share', 1):.2f})", flush=True)
        best = min((k for k in cpu if k.startswith(f"cpu {threads}t ")), key=lambda k: cpu[k]["latency_ms"])
        gpu_ms, cpu_ms = figures[gpu_key], cpu[best]["latency_ms"]
        RESULTS["latency"] = {"cell": label(cell), "img_size": size, "store": figures, "cpu": cpu,
                              "cpu_threads": threads, "compared": [gpu_key, best]}
        judge("latency", gpu_ms < cpu_ms,
              f"GPU {gpu_ms:.2f} ms ({gpu_key}) vs CPU {cpu_ms:.2f} ms ({best}, {threads} threads) at {size} px",
              "" if gpu_key == "latency_deployed_ms" else "latency_deployed_ms not recorded: the eager figure")


def harness_and_util(plan: Plan, bargs: argparse.Namespace, registry: Any, device: torch.device) -> None:
    """bench_gpu's harness-vs-bare section and utilisation sampler, on one shared 224 px data set."""
    models = bg.Models(registry, registry.datasets["synthetic-cxr"].num_classes)
    data = None

    def training_data() -> Any:  # bench_gpu's: synthetic-cxr at the harness's size, shared by both steps
        return data if data is not None else prepare(registry.datasets["synthetic-cxr"], bargs.img_size, None,
                               {"n_train": bargs.n_train, "n_val": 8, "n_test": 8})

    with step("harness", plan, f"harness vs bare loop, {bargs.img_size} px, each model in its precision for the device",
              [f"harness {m}" for m in bargs.models]) as allowed:
        if allowed >= 0:
            data = training_data()
            bg.section_harness(bargs, models, data, device, StepBudget(bg.elapsed() + allowed, plan.mode.per_model_s))
            RESULTS["harness"] = bg.RESULTS.get("harness", {})
            for name in bargs.models:
                v = RESULTS["harness"].get(name)
                judge(f"harness {name}", None if v is None else v["block_ratio"] >= 0.9,
                      "not measured (budget or error above)" if v is None else
                      f"{v['block_ratio']:.3f} in blocks, {v['step_ratio']:.3f} per step ({v['precision']})")
    with step("util", plan, f"GPU utilisation, {bargs.util_model} training at {bargs.img_size} px", ["util"]) as allowed:
        if allowed < 0:
            return
        if device.type != "cuda":
            bg.say("  cpu: no GPU to sample (needs CUDA)")
            judge("util", None, "skipped: needs CUDA")
            return
        bg.section_util(bargs, models, training_data(), device, StepBudget(bg.elapsed() + allowed, plan.mode.per_model_s))
        run = bg.RESULTS.get("util", {}).get(bargs.util_model, {}).get("harness") or {}
        RESULTS["util"] = bg.RESULTS.get("util", {})
        sampled = run.get("nvidia_smi") or run.get("torch_cuda_utilization")
        source = "nvidia-smi utilization.gpu" if run.get("nvidia_smi") else "torch.cuda.utilization"
        judge("util", None if not sampled else sampled["mean"] >= 70,
              "not measured" if not sampled else f"mean {sampled['mean']:.1f}%, median {sampled['median']:.0f}% "
              f"({sampled['samples']} samples, {source})")


def warmup_target() -> None:
    """No cell of any store may spend more than 3 s in one-time warm-up (``timings['warmup_s']``)."""
    cells = [(n, c) for n in ("quick", "full", "m224") for c in read_cells(OUT / n / "work") if c.status == "done"]
    missing = [f"{n}: {label(c)}" for n, c in cells if "warmup_s" not in c.timings]
    if not cells or missing:
        judge("warmup", None, "no finished cell" if not cells else
              f"not recorded ({len(missing)} of {len(cells)} cells, e.g. {missing[0]})")
        return
    worst = max(cells, key=lambda nc: nc[1].timings["warmup_s"])
    judge("warmup", worst[1].timings["warmup_s"] <= 3,
          f"max {worst[1].timings['warmup_s']:.2f} s ({worst[0]}: {label(worst[1])}), {len(cells)} cells")


# ---------------------------------------------------------------- environment, main


def nvidia_smi() -> dict[str, str]:
    """Driver, CUDA version the driver supports, GPU name and memory, as nvidia-smi reports them."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"nvidia_smi": "not found"}
    out: dict[str, str] = {}
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        query = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        out["smi_gpu"], out["driver"], out["smi_memory"] = (s.strip() for s in query.split(","))
        header = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
        out["driver_cuda"] = (re.findall(r"CUDA Version:\s*(\S+)", header) or ["?"])[0]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="LOGDIR: gpu_check.log, gpu_check.json, work dirs")
    parser.add_argument("--device", default="cuda", help="cuda[:N], or cpu for the smoke test")
    parser.add_argument("--budget-s", type=float, default=440.0,
                        help="wall seconds for all steps (default 440: with start-up and the wheels, under 8 minutes)")
    parser.add_argument("--models", default=None, help="harness vs bare loop models (comma-separated)")
    parser.add_argument("--n-train-224", type=int, default=None, help="training images of the 224 px matrix (2000)")
    parser.add_argument("--epochs-224", type=int, default=1, help="epochs of the 224 px matrix")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global OUT
    args = parse_args(argv)
    try:
        device = resolve_runtime(args.device, "off").device
    except MedkdError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    mode = GPU if device.type == "cuda" else SMOKE
    OUT = args.out.resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    log = open(OUT / "gpu_check.log", "w", buffering=1)  # noqa: SIM115 - open for the whole run
    sys.stdout, sys.stderr = bg.Tee(sys.__stdout__, log), bg.Tee(sys.__stderr__, log)
    bg.LOG = log
    signal.signal(signal.SIGTERM, bg.on_sigterm)
    plan = Plan(mode, args.budget_s)
    RESULTS["mode"] = "gpu" if mode is GPU else "smoke"
    bg.say(f"gpu_check {' '.join(sys.argv[1:])}: {'GPU check' if mode is GPU else 'CPU smoke test'}, "
           f"budget {args.budget_s:.0f} s")
    RESULTS["env"] = bg.environment(device) | nvidia_smi() | {"cuda_init_s": bg.cuda_init(device),
                                                             "argv": sys.argv[1:], "medkd_bench": medkd_bench.__file__}
    for key, value in RESULTS["env"].items():
        print(f"  {key}: {value}", flush=True)
    bargs = bg.parse_args(["--device", args.device, "--models", args.models or mode.models, "--img-size",
                           str(mode.img_size), "--n-train", str(mode.n_train), "--rounds", str(mode.rounds),
                           "--util-seconds", str(mode.util_seconds), "--cpu-latency-min-s", str(mode.cpu_latency_min_s)])
    registry = load_registry()
    unknown = [m for m in bargs.models if m not in registry.teachers and m not in registry.students]
    if unknown:
        print(f"gpu_check: --models: unknown model(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    for key, (text, target) in TARGETS.items():
        pending(key, text, target)
    for name in bargs.models:
        pending(f"harness {name}", f"training at {bargs.img_size} px, harness / bare loop, {name}", ">= 0.9x")
    save()
    size, n224 = mode.m224_size, args.n_train_224 or mode.m224_n_train
    matrix("quick", plan, mode.quick, f"run --matrix quick, {mode.scale}")
    matrix("full", plan, mode.full, f"run --matrix full, {mode.scale}")
    rerun(plan)
    latency(plan, bargs, registry)
    harness_and_util(plan, bargs, registry, device)
    matrix("m224", plan, (*mode.m224, "--img-size", str(size), "--dataset-option", f"synthetic-cxr.n_train={n224}",
                          "--epochs", str(args.epochs_224)), f"{size} px matrix, synthetic-cxr, n_train {n224}")
    warmup_target()
    print("\nSummary against issue 20's targets" + ("" if mode is GPU else " (CPU smoke test)"), flush=True)
    for t in RESULTS["targets"].values():
        print(f"  {t['verdict']}  {t['label']}: {t['value']} (target {t['target']})"
              + (f" [{t['note']}]" if t["note"] else ""), flush=True)
    met = sum(t["verdict"] == "PASS" for t in RESULTS["targets"].values())
    bg.say(f"{met}/{len(RESULTS['targets'])} targets met; log {OUT / 'gpu_check.log'}, figures {OUT / 'gpu_check.json'}")
    RESULTS["done_s"] = bg.elapsed()
    save()
    return 1 if RESULTS.get("failed_steps") else 0


if __name__ == "__main__":
    sys.exit(main())
