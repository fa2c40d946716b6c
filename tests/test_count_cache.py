"""fvcore counts cached in the work dir: counted once per architecture and input size, damage-tolerant."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import medkd_bench.evaluate.cost as cost
from medkd_bench.evaluate.count_cache import COUNTS_FILE, FORMAT, count_key
from medkd_bench.registry import load_registry
from medkd_bench.run.cells import Cell
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.run_options import RunOptions
from medkd_bench.runtime.device import resolve_runtime
from tests.helpers import plugin_fixture

CELL = Cell("synthetic-cxr", "teacher", teacher="file-teacher")


@pytest.fixture(scope="module")
def registry():
    return load_registry([Path(plugin_fixture("file_teacher"))])


def _computer(registry, work: Path, img_size: int = 32) -> CellComputer:
    return CellComputer(registry, RunOptions(work_dir=work, img_size=img_size), resolve_runtime("cpu", "off"))


def _model(registry, img_size: int = 32) -> torch.nn.Module:
    return registry.get("teacher", "file-teacher").build(3, img_size)


@pytest.fixture
def counted(monkeypatch):
    """The real fvcore count, with its calls counted."""
    calls: list[int] = []
    real = cost.count_gmacs

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(cost, "count_gmacs", counting)
    return calls


def _no_fvcore(*args, **kwargs):
    raise AssertionError("fvcore counted again")


def test_a_fresh_computer_reads_the_counts_from_the_work_dir(registry, tmp_path, counted, monkeypatch):
    first = _computer(registry, tmp_path).cost_of(CELL, _model(registry), timed=False)
    assert counted == [32] and first["gmacs"] > 0 and first["params_m"] > 0
    entries = json.loads((tmp_path / COUNTS_FILE).read_text())["counts"]
    assert list(entries) == [count_key("file-teacher", "1", 32, 3)]
    counting = cost.count_gmacs
    monkeypatch.setattr(cost, "count_gmacs", _no_fvcore)
    again = _computer(registry, tmp_path).cost_of(CELL, _model(registry), timed=False)
    assert again == first  # the same floats, exactly
    # Another input size is another architecture as far as counts go: counted and added beside it.
    monkeypatch.setattr(cost, "count_gmacs", counting)
    bigger = _computer(registry, tmp_path, img_size=48).cost_of(CELL, _model(registry, 48), timed=False)
    assert counted == [32, 48] and bigger["gmacs"] > first["gmacs"] and bigger["params_m"] == first["params_m"]
    assert len(json.loads((tmp_path / COUNTS_FILE).read_text())["counts"]) == 2


@pytest.mark.slow
def test_a_new_process_does_not_count_again(registry, tmp_path):
    """What a pool worker or a rerun sees: counts written by one process, read by the next without fvcore."""
    first = _computer(registry, tmp_path).cost_of(CELL, _model(registry), timed=False)
    script = f"""
import json, sys
from pathlib import Path
import medkd_bench.evaluate.cost as cost
def refuse(*a, **k): raise AssertionError("fvcore counted again")
cost.count_gmacs = refuse
from medkd_bench.registry import load_registry
from medkd_bench.run.cells import Cell
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.run_options import RunOptions
from medkd_bench.runtime.device import resolve_runtime
registry = load_registry([Path({plugin_fixture("file_teacher")!r})])
computer = CellComputer(registry, RunOptions(work_dir=Path({str(tmp_path)!r}), img_size=32),
                        resolve_runtime("cpu", "off"))
cell = Cell("synthetic-cxr", "teacher", teacher="file-teacher")
print(json.dumps(computer.cost_of(cell, registry.get("teacher", "file-teacher").build(3, 32), timed=False)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == first


@pytest.mark.parametrize("damage", ["truncated", "garbage", "nan entry", "nan file", "wrong shape", "one digit",
                                    "no digest", "older format"])
def test_a_damaged_cache_is_counted_again_with_a_warning_naming_it(registry, tmp_path, counted, capsys, damage):
    first = _computer(registry, tmp_path).cost_of(CELL, _model(registry), timed=False)
    path = tmp_path / COUNTS_FILE
    text = path.read_text()
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff\xfe garbage \x89PNG")
    elif damage == "nan entry":
        doc = json.loads(text)
        doc["counts"][count_key("file-teacher", "1", 32, 3)]["gmacs"] = float("nan")
        path.write_text(json.dumps(doc))  # json writes NaN; the cache itself never does
    elif damage == "nan file":
        path.write_text("NaN")
    elif damage == "one digit":  # 7.60M parameters published as 1.60M: valid JSON, a plausible number
        changed = re.sub(r'("params_m": )(\d)', lambda m: m[1] + str((int(m[2]) + 6) % 10), text, count=1)
        assert changed != text
        path.write_text(changed)
    elif damage == "no digest":  # a hand-edited or older file: figures nobody can vouch for
        doc = json.loads(text)
        doc["counts"][count_key("file-teacher", "1", 32, 3)] = {"params_m": 1.6, "gmacs": 0.5}
        path.write_text(json.dumps(doc))
    elif damage == "older format":  # format 1 kept no SHA-256: its figures are not trusted
        path.write_text(json.dumps({"format": 1, "counts": {count_key("file-teacher", "1", 32, 3): first}}))
    else:
        path.write_text(json.dumps({"format": FORMAT, "counts": [1, 2]}))
    capsys.readouterr()
    again = _computer(registry, tmp_path).cost_of(CELL, _model(registry), timed=False)
    assert again == first and counted == [32, 32]  # counted again, to the same figures
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"fvcore count cache {path}" in err and "counting again" in err
    # The file is whole again: the next computer reads it silently.
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert _computer(registry, tmp_path).cost_of(CELL, _model(registry), timed=False) == first
    assert counted == [32, 32] and capsys.readouterr().err == ""
