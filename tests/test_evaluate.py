import time

import pytest
import torch
from torch import nn

from medkd_bench.evaluate.cost import count_gmacs, count_params, measure_latency
from medkd_bench.evaluate.metrics import classification_metrics
from medkd_bench.runtime.device import cpu_has_native_bf16, resolve_runtime
from medkd_bench.specs import StudentSpec


def test_classification_metrics_known_case():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(labels, preds, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1: a = 2*0.5*0.5/1 = 0.5, b = 2*(2/3)*1/(5/3) = 0.8, c = 2*1*0.5/1.5 = 2/3
    assert m["per_class_f1"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 2 / 3})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_fvcore_counts_macs_of_a_known_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2, bias=False))
    # conv: 8 out x 16x16 positions x 27 MACs; fvcore counts one op per pooled input; linear: 16 MACs
    assert count_gmacs(model, 16) * 1e9 == pytest.approx(8 * 16 * 16 * 27 + 8 * 16 * 16 + 16)
    assert count_params(model) == 8 * 27 + 16


def test_latency_is_positive_and_in_inference_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    out = measure_latency(model, 16, resolve_runtime("cpu", "off"), warmup=2, runs=5)
    assert out["latency_ms"] > 0 and out["latency_iqr_ms"] >= 0


def test_runtime_choices():
    off = resolve_runtime("cpu", "off")
    assert off.amp_dtype is None and off.describe() == "cpu (fp32)" and off.precision == "fp32"
    assert resolve_runtime("cpu", "bf16").amp_dtype == torch.bfloat16
    assert resolve_runtime("cpu", "bf16").precision == "bf16"


def test_the_recorded_machine_names_the_cpu_and_the_kernels_instruction_set():
    """Intel with AMX and AMD without give the same cell other weights: both were "x86_64 CPU" before."""
    import platform
    from pathlib import Path

    from medkd_bench.runtime.device import machine_description

    text = machine_description(resolve_runtime("cpu", "off"))
    assert torch.backends.cpu.get_cpu_capability() in text and ("AMX" in text) == cpu_has_native_bf16()
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1] for line in lines if line.startswith("model name")), None)
    if model is not None:  # Linux on x86: the name every figure of this project's machines should carry
        assert f"{platform.machine()} CPU ({' '.join(model.split())}; " in text, text


def test_cpu_auto_follows_each_specs_fast_path():
    def spec(**hints):
        return StudentSpec("m", build=lambda c, s: nn.Identity(), target_layers=lambda m: [m], **hints)

    auto = resolve_runtime("cpu", "auto")
    assert auto.cpu_auto
    assert auto.for_model(spec()).precision == "fp32"
    assert auto.for_model(spec(cpu_channels_last=True)).precision == "fp32+cl"
    assert auto.for_model(spec(cpu_bf16=True)).precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    # explicit choices are not second-guessed per model
    off = resolve_runtime("cpu", "off")
    assert off.for_model(spec(cpu_bf16=True, cpu_channels_last=True)) is off


def test_latency_keeps_timing_until_the_minimum_time():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    short = measure_latency(model, 16, resolve_runtime("cpu", "off"), warmup=1, runs=3)
    start = time.perf_counter()
    timed = measure_latency(model, 16, resolve_runtime("cpu", "off"), warmup=1, runs=3, min_seconds=0.05)
    elapsed = time.perf_counter() - start
    assert short["latency_runs"] == 3
    assert timed["latency_runs"] > 3 and elapsed >= 0.05  # the timed runs alone add up to 50 ms


def test_latency_attempts_bound_how_often_a_busy_machine_is_timed_again(monkeypatch, tmp_path):
    """``--latency-attempts 1`` (the suite's runs): a timing beside other work is kept, flagged, not redone
    after a pause; the default takes it up to three times."""
    from medkd_bench.evaluate import cost
    from medkd_bench.registry import load_registry
    from medkd_bench.run.cells import Cell
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.run_options import RunOptions
    from medkd_bench.runtime.device import resolve_runtime

    monkeypatch.setattr(cost, "cpu_share", lambda *args: 0.3)  # every timing beside other work
    pauses: list[float] = []
    monkeypatch.setattr(cost.time, "sleep", pauses.append)
    registry = load_registry()
    student = registry.get("student", "ofa-595")
    for attempts in (1, RunOptions.latency_attempts):
        options = RunOptions(work_dir=tmp_path / str(attempts), img_size=32, latency_runs=2, latency_seconds=0,
                             latency_attempts=attempts)
        computer = CellComputer(registry, options, resolve_runtime("cpu", "off"))
        out = computer.cost_of(Cell("synthetic-cxr", "label-only", student="ofa-595"), student.build(3, 32).eval())
        assert out["latency_attempts"] == attempts and out["latency_cpu_share"] == 0.3
    # A pause between attempts, none after the last (it slept a second after every busy model's last one).
    assert pauses == [1.0] * (RunOptions.latency_attempts - 1)


def test_a_latency_timed_beside_other_work_is_timed_again_and_flagged():
    from medkd_bench.evaluate.cost import QUIET_CPU_SHARE, quietest
    from medkd_bench.report.format import latency_text

    shares = iter([0.55, 0.95, 0.3])
    first_quiet = quietest(lambda: {"latency_ms": 6.0, "latency_cpu_share": next(shares)}, pause_s=0)
    assert first_quiet["latency_cpu_share"] == 0.95 and first_quiet["latency_attempts"] == 2
    shares = iter([0.5, 0.7, 0.6])
    busy = quietest(lambda: {"latency_ms": 9.0, "latency_iqr_ms": 1.0, "latency_cpu_share": next(shares)},
                    pause_s=0)
    assert busy["latency_cpu_share"] == 0.7 and busy["latency_attempts"] == 3  # the best of three, flagged
    assert latency_text(busy, "latency") == "9.00 (IQR 1.00, busy: 70% CPU ⚠)"
    assert latency_text({**busy, "latency_cpu_share": QUIET_CPU_SHARE}, "latency") == "9.00 (IQR 1.00)"
    assert latency_text({}, "latency") == "-"


def test_measured_cpu_latency_records_the_cpu_share_it_got():
    from torch import nn

    from medkd_bench.evaluate.cost import measure_latency
    from medkd_bench.runtime.device import resolve_runtime

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    timed = measure_latency(model, 32, resolve_runtime("cpu", "off", False), warmup=2, runs=20)
    assert timed["latency_runs"] == 20 and 0 < timed["latency_cpu_share"] <= 1.0
