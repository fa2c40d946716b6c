"""Planning: which cells a run has, in run order, and which datasets it must leave out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medkd_bench.errors import MedkdError
from medkd_bench.registry import Registry, unknown_names
from medkd_bench.run.cells import Cell
from medkd_bench.specs import DatasetSpec

MATRICES = ("full", "quick")
#: ``--matrix quick`` is a smoke run: without ``--epochs`` every model trains this many epochs, a fixed
#: schedule (cells stored ``stopped = fixed``, flagged as not converged), so it finishes in minutes;
#: ``--matrix full`` trains every model until its validation accuracy plateaus.
QUICK_EPOCHS = 4


def quick_dataset_options(registry: Registry, cells: Sequence[Cell],
                          given: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``given`` dataset options, over each planned dataset's ``quick_options`` (``DatasetSpec.quick_options``)."""
    out = {name: dict(values) for name, values in given.items()}
    for name in dict.fromkeys(c.dataset for c in cells):
        quick = registry.datasets[name].quick_options
        if quick:
            out[name] = {**quick, **out.get(name, {})}
    return out


def _check_names(kind: str, wanted: Sequence[str] | None, known: dict[str, Any]) -> list[str]:
    if not wanted:
        return sorted(known)  # stable across machines, whatever the entry-point order
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise unknown_names(f"{kind}(s)", unknown, known, f" in --{kind}s")
    return list(dict.fromkeys(wanted))


def reads_files(spec: DatasetSpec) -> bool:
    """Whether a dataset is read from files (a root, or folders its spec names) rather than generated."""
    return spec.needs_root or spec.fingerprint is not None


def unavailable_datasets(registry: Registry, data_root: Path | None,
                         names: Sequence[str] | None = None) -> dict[str, str]:
    """Datasets that need a local copy which is not there, each with the reason.

    A dataset that needs a root is available when ``data_root`` is given and
    its ``locate`` (if any) finds the dataset's folder under it.
    """
    out: dict[str, str] = {}
    for name in names if names is not None else sorted(registry.datasets):
        spec = registry.get("dataset", name)
        if not spec.needs_root:
            continue
        if data_root is None:
            out[name] = "needs a local copy: no --data-root given and MEDKD_DATA is not set"
        elif not Path(data_root).is_dir():
            out[name] = f"--data-root {data_root} is not a folder"
        elif spec.locate is not None:
            try:
                spec.locate(Path(data_root))
            except MedkdError as exc:
                out[name] = str(exc)
    return out


def plan(
    registry: Registry,
    matrix: str = "full",
    teachers: Sequence[str] | None = None,
    students: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    seed: int = 0,
    data_root: Path | None = None,
    seeds: int = 1,
    methods: Sequence[str] | None = None,
    teacher_seeds: int = 1,
) -> list[Cell]:
    """Cells in run order: per dataset and seed, teachers first, then baselines, then distilled students.

    ``methods`` are the distillation methods (every registered one without it,
    or with ``all``); each distils every teacher into every student.

    Without ``datasets``, real datasets whose local copy is missing are left
    out (:func:`unavailable_datasets` says which and why); a dataset named
    in ``datasets`` must be there. ``quick`` prefers generated datasets.
    ``seeds`` runs every student cell with seeds ``seed .. seed + seeds - 1``. Teachers
    are trained with the first ``teacher_seeds`` of them (default one: a fixed teacher
    per dataset, as KD practice ships one trained teacher) and student seed ``k``
    distils from teacher seed ``seed + (k - seed) % teacher_seeds``; with
    ``teacher_seeds >= seeds`` every seed has its own teacher, fully independent.
    """
    if seeds < 1:
        raise MedkdError(f"--seeds {seeds}: expected at least 1")
    if teacher_seeds < 1:
        raise MedkdError(f"--teacher-seeds {teacher_seeds}: expected at least 1")
    if matrix not in MATRICES:
        raise MedkdError(f"unknown --matrix {matrix!r} (choose from: {', '.join(MATRICES)})")
    ts = _check_names("teacher", teachers, registry.teachers)
    ss = _check_names("student", students, registry.students)
    ds = _check_names("dataset", datasets, registry.datasets)
    ms = _check_names("method", None if methods and list(methods) == ["all"] else methods, registry.methods)
    if not ms:
        raise MedkdError("no distillation method is registered (medkd-bench's built-in methods are not installed?)")
    missing = unavailable_datasets(registry, data_root, ds)
    if datasets and missing:
        name, reason = next(iter(missing.items()))
        raise MedkdError(reason if name in reason else f"dataset {name!r}: {reason}")
    ds = [d for d in ds if d not in missing]
    if matrix == "quick":  # one of each: the first (alphabetically, or as filtered) after filters
        if not datasets:  # a quick look should not start by decoding a real dataset
            ds = sorted(ds, key=lambda d: reads_files(registry.datasets[d]))
        ts, ss, ds = ts[:1], ss[:1], ds[:1]
        if not methods:  # Hinton KD, the method every other one is compared with
            ms = ["kd"] if "kd" in ms else ms[:1]
    if not (ts and ss and ds):
        raise MedkdError("the matrix is empty: no teacher, student or dataset is registered or selected")
    n_teachers = min(teacher_seeds, seeds)
    cells: list[Cell] = []
    for d in ds:
        for k in range(seed, seed + seeds):
            if k < seed + n_teachers:
                cells += [Cell(d, "teacher", teacher=t, seed=k) for t in ts]
            cells += [Cell(d, "label-only", student=s, seed=k) for s in ss]
            tk = seed + (k - seed) % n_teachers
            cells += [Cell(d, m, teacher=t, student=s, seed=k, teacher_seed=tk) for m in ms for t in ts for s in ss]
    return cells


def check_method_options_used(option_flags: Mapping[str, str], cells: Sequence[Cell]) -> None:
    """Every method given an option (``--method-option dkd.beta=2``, ``--temperature``) is in the run.

    ``option_flags`` maps each such method to the flag that set it (for the
    message). An option for a method the run does not train changes nothing,
    so accepting it would let a typo in ``--methods`` (or a forgotten method)
    pass as a finished experiment with that setting: it is bad input, one line, before any work.
    """
    methods = list(dict.fromkeys(c.method for c in cells if c.distilled))
    for name, flag in option_flags.items():
        if name not in methods:
            raise MedkdError(f"{flag}: method {name!r} is not in this run (its methods: "
                             f"{', '.join(methods) or 'none'}); add it to --methods or drop the option")
