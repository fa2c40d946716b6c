"""``medkd-bench student search``: search the OFA supernet (:mod:`medkd_bench.nas`) for a student that fits here.

The command sits with the other commands; the search it drives is the
:mod:`medkd_bench.nas` library. It is not added to the group on import: the
built-in ``ofa-search`` plugin, which registers the searched students, adds it
through the ``register_commands`` hook (``plugins/students/ofa_search.py``), so
without that plugin there is no ``student`` command.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from medkd_bench.cli.app import DEFAULT_WORK_DIR, console, load_cli_registry
from medkd_bench.errors import MedkdError


@click.group()
def student() -> None:
    """Students made for this machine: search the OFA supernet for a latency or MACs budget."""


@student.command("search")
@click.option("--latency-ms", type=float, default=None,
              help="Budget: batch-1 latency on this machine and --device, in ms.")
@click.option("--gmacs", type=float, default=None, help="Budget: multiply-accumulates at --img-size, in GMACs.")
@click.option("--img-size", type=click.IntRange(32), default=64, show_default=True,
              help="Input size the budget holds at: the dataset's img_size in the matrix.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N] (where latency is timed).")
@click.option("--amp", default="auto", show_default=True,
              help="Precision latency is timed in; keep it as `run` uses it (auto: bf16/fp16 on CUDA).")
@click.option("--num-classes", type=click.IntRange(2), default=3, show_default=True,
              help="Classifier size the student is timed and counted with.")
@click.option("--width-mult", type=click.Choice(["1.0", "1.2"]), default="1.2", show_default=True,
              help="Supernet width (OFA-595's supernet is 1.2).")
@click.option("--name", default=None, help="Student name [default: ofa-<device>-<N>ms or ofa-<N>mmacs].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Spec file to write [default: <work-dir>/students/<name>.json].")
@click.option("--supernet-weights", type=click.Path(path_type=Path), default=None,
              help="Local OFA supernet checkpoint (.safetensors or torch file, read with weights_only=True); "
                   "the student inherits its weights. Nothing is downloaded.")
@click.option("--population", type=click.IntRange(2), default=100, show_default=True)
@click.option("--generations", type=click.IntRange(0), default=30, show_default=True)
@click.option("--repeats", type=click.IntRange(3), default=20, show_default=True,
              help="Timed runs per part and per verified subnet (median, after warm-up).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help="Holds the cost lookup table (ofa_cost_lut.json) and, by default, students/.")
def student_search(latency_ms, gmacs, img_size, device, amp, num_classes, width_mult, name, out,
                   supernet_weights, population, generations, repeats, seed, work_dir) -> None:
    """Search the once-for-all MobileNetV3 supernet for the biggest student that fits a budget here.

    Evolutionary search (as OFA's) over kernel size 3/5/7, expand ratio 3/4/6 and depth 2/3/4 per
    stage at a fixed --img-size. Latency is predicted from a per-part lookup table timed on this
    machine (cached in the work dir, so repeated searches are fast), and the pick is verified by
    timing the whole subnet; GMACs are counted by fvcore.

    What it maximises: capacity (MACs, then parameters) within the budget. Without the pretrained
    supernet's accuracy predictor, which would need a download, this picks the biggest student the
    budget allows, not a proven most-accurate one; on small medical datasets trained from scratch,
    bigger is not guaranteed to be better. The result is a spec file the `ofa-search` student plugin
    registers (from the students/ folder of a command's --work-dir, and $MEDKD_STUDENTS, else
    .medkd/students/), so `run --students NAME --work-dir W` trains it.
    """
    from medkd_bench.nas.cost_table import LUT_FILE
    from medkd_bench.nas.evolution import Budget, SearchSettings, search
    from medkd_bench.nas.space import build_subnet
    from medkd_bench.nas.spec_files import (
        check_name,
        default_name,
        iter_searched_students,
        searched_student_files,
        spec_document,
        write_spec,
    )
    from medkd_bench.runtime.device import resolve_runtime
    from medkd_bench.spec_discovery import specs_in_work_dir

    if (latency_ms is None) == (gmacs is None):
        raise MedkdError("student search: give exactly one budget, --latency-ms or --gmacs")
    budget = Budget("latency_ms", latency_ms) if latency_ms is not None else Budget("gmacs", gmacs)
    runtime = resolve_runtime(device, amp)
    name = check_name(name or default_name(budget, runtime.device.type))
    registry = load_cli_registry((), work_dir=work_dir)
    if name in registry.students and registry.owners[("student", name)] != "ofa-search":
        raise MedkdError(f"--name {name}: a student of that name is already registered by plugin "
                         f"{registry.owners[('student', name)]!r}")
    out = out or work_dir / "students" / f"{name}.json"
    with specs_in_work_dir(work_dir):  # the files every command given this --work-dir registers
        clash = [st.path for st in iter_searched_students()
                 if st.name == name and st.path.resolve() != out.resolve()]
    if clash:
        raise MedkdError(f"--name {name}: spec file {clash[0]} already defines it; remove that file or pick "
                         "another --name")
    from medkd_bench.files.paths import check_writable

    check_writable(out.parent, "--out folder")
    check_writable(work_dir, "--work-dir")
    if supernet_weights is not None:  # fail before the search, not after it
        build_subnet(smallest_settings(float(width_mult)), num_classes, supernet_weights)
    opts = SearchSettings(population=population, generations=generations, seed=seed, verify_runs=repeats)
    console.print(f"searching for {budget.text()} at {img_size} px on {runtime.describe()} "
                  f"(population {population}, {generations} generations)")
    result = search(budget, runtime, img_size, num_classes, float(width_mult), work_dir / LUT_FILE, opts,
                    log=lambda msg: console.print(f"  {msg}", highlight=False))
    path = write_spec(spec_document(result, name, supernet_weights), out)
    table = Table("", "budget", "measured", "predicted", title=f"student {name}")
    table.add_row("latency (ms)", f"{latency_ms:g}" if latency_ms is not None else "-", f"{result.latency_ms:.2f}",
                  "-" if budget.kind == "gmacs" else f"{result.predicted.latency_ms * result.latency_scale:.2f}")
    table.add_row("GMACs", f"{gmacs:g}" if gmacs is not None else "-", f"{result.gmacs:.4f}",
                  f"{result.predicted.gmacs:.4f}")
    table.add_row("params (M)", "-", f"{result.params_m:.2f}", f"{result.predicted.params / 1e6:.2f}")
    console.print(table)
    console.print(f"subnet: ks={list(result.settings.ks)} e={list(result.settings.e)} d={list(result.settings.d)}",
                  highlight=False)
    console.print(f"{result.evaluated} subnets evaluated, {result.parts_timed} parts newly timed "
                  f"(table {work_dir / LUT_FILE}); wrote {path}", highlight=False)
    with specs_in_work_dir(work_dir):
        found = path.resolve() in {p.resolve() for p in searched_student_files()}
    if found:
        console.print(f"registered as student {name} for commands given --work-dir {work_dir}: "
                      f"medkd-bench run --students {name},ofa-595 --work-dir {work_dir}", highlight=False)
    else:
        console.print(f"not in the student search path: set MEDKD_STUDENTS={path.parent} so runs register "
                      f"{name}", highlight=False)


def smallest_settings(width_mult: float):
    from medkd_bench.nas.space import SMALLEST, SubnetSettings

    return SubnetSettings(SMALLEST.ks, SMALLEST.e, SMALLEST.d, width_mult)
