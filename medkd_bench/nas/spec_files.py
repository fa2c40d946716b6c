"""Student spec files: what ``student search`` writes and the ``ofa-search`` plugin registers.

A spec file is JSON naming the subnet's settings (and optional supernet
weights) and what the search measured. Files are found in ``$MEDKD_STUDENTS``
(``os.pathsep``-separated folders or files), else ``.medkd/students/``; a bad
file fails with one line naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.nas.evolution import OBJECTIVE, Budget, SearchResult
from medkd_bench.nas.space import DEPTHS, EXPAND_RATIOS, KERNEL_SIZES, SubnetSettings, build_subnet
from medkd_bench.spec_discovery import read_json_spec, spec_files, unique_specs
from medkd_bench.specs import check_name as check_spec_name

SPEC_FORMAT = "medkd-bench/ofa-student"


SPEC_VERSION = 1


#: Environment variable listing spec files or folders of them (``os.pathsep``-separated).
STUDENTS_ENV = "MEDKD_STUDENTS"


#: Where spec files are written and, when the variable is unset, read: ``<default work dir>/students``.
DEFAULT_STUDENTS_DIR = Path(".medkd") / "students"


def default_name(budget: Budget, device: str) -> str:
    """``ofa-cpu-8ms``, ``ofa-cuda-2p5ms`` or ``ofa-50mmacs`` (MACs do not depend on the device)."""
    if budget.kind == "latency_ms":
        return f"ofa-{device}-{budget.value:g}ms".replace(".", "p")
    return f"ofa-{budget.value * 1000:g}mmacs".replace(".", "p")


def check_name(name: str) -> str:
    """``student search --name``: the one name rule (:func:`medkd_bench.specs.check_name`)."""
    return check_spec_name("student", name, "--name")


def spec_document(result: SearchResult, name: str, supernet_weights: Path | None = None) -> dict[str, Any]:
    """The JSON a student spec file holds; :func:`read_searched_student` reads it back."""
    from medkd_bench.models.weights import file_digest

    weights = None
    if supernet_weights is not None:
        weights = {"path": str(Path(supernet_weights).resolve()), "sha256_16": file_digest(supernet_weights)}
    return {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "name": name,
        "subnet": result.settings.as_json(),
        "supernet": {"ks_list": list(KERNEL_SIZES), "expand_ratio_list": list(EXPAND_RATIOS),
                     "depth_list": list(DEPTHS), "width_mult": result.settings.width_mult},
        "supernet_weights": weights,
        "budget": {"kind": result.budget.kind, "value": result.budget.value},
        "measured": {"latency_ms": result.latency_ms, "latency_iqr_ms": result.latency_iqr_ms,
                     "gmacs": result.gmacs, "params_m": result.params_m, "num_classes": result.num_classes},
        "predicted": {"latency_ms": result.predicted.latency_ms * result.latency_scale,
                      "latency_sum_of_parts_ms": result.predicted.latency_ms, "gmacs": result.predicted.gmacs},
        "img_size": result.img_size,
        "device": result.device,
        "machine": result.machine,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "search": {"method": "evolutionary (OFA EvolutionFinder) over a per-part cost lookup table",
                   "objective": OBJECTIVE, "population": result.search.population,
                   "generations": result.search.generations, "seed": result.search.seed,
                   "subnets_evaluated": result.evaluated, "rounds": result.rounds},
    }


def write_spec(document: dict[str, Any], path: Path) -> Path:
    return atomic_write_text(path, json.dumps(document, indent=2) + "\n")


@dataclass(frozen=True)
class SearchedStudent:
    """A student spec file, read and checked: what the ``ofa-search`` plugin registers."""

    path: Path
    name: str
    settings: SubnetSettings
    budget: Budget
    img_size: int
    device: str
    machine: str
    measured: dict[str, float]
    created: str
    weights_path: Path | None = None
    weights_digest: str | None = None

    @property
    def revision(self) -> str:
        """Changes when the model the file describes changes, and so does every cell hash using it."""
        return f"{self.settings.digest()}{'-' + self.weights_digest if self.weights_digest else ''}"

    def describe(self) -> str:
        m = self.measured
        return (f"OFA MobileNetV3 subnet searched for {self.budget.text()} at {self.img_size} px on {self.machine} "
                f"({self.created}): measured {m.get('latency_ms', float('nan')):.2f} ms, "
                f"{m.get('gmacs', float('nan')):.4f} GMACs, {m.get('params_m', float('nan')):.2f}M params "
                f"with {int(m.get('num_classes', 3))} classes; depths {list(self.settings.d)}"
                f"{'; from local supernet weights' if self.weights_path else ''}. Spec file {self.path.name}.")

    def build(self, num_classes: int, img_size: int) -> nn.Module:
        """The subnet (resolution is elastic, so any ``img_size`` builds; the budget held at the searched one)."""
        weights = None
        if self.weights_path is not None:
            from medkd_bench.models.weights import file_digest

            if not self.weights_path.is_file():
                raise MedkdError(f"student spec file {self.path}: supernet weights {self.weights_path} are missing")
            if file_digest(self.weights_path) != self.weights_digest:
                raise MedkdError(f"student spec file {self.path}: supernet weights {self.weights_path} changed "
                                 "since the search; search again")
            weights = self.weights_path
        return build_subnet(self.settings, num_classes, weights)


def require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MedkdError(f"student spec file {path}: missing or malformed {key!r}")
    return value


def read_searched_student(path: Path) -> SearchedStudent:
    """Parse and check a spec file; any problem is one MedkdError naming the file."""
    path = Path(path)
    doc = read_json_spec(path, "student spec file")
    if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
        raise MedkdError(f"student spec file {path}: not a medkd-bench OFA student (format must be {SPEC_FORMAT!r})")
    if doc.get("version") != SPEC_VERSION:
        raise MedkdError(f"student spec file {path}: version {doc.get('version')!r} not supported "
                         f"(expected {SPEC_VERSION})")
    name = require(doc, "name", str, path)
    check_spec_name("student", name, f"student spec file {path}")
    sub = require(doc, "subnet", dict, path)
    try:
        settings = SubnetSettings(tuple(sub["ks"]), tuple(sub["e"]), tuple(sub["d"]), float(sub["width_mult"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MedkdError(f"student spec file {path}: subnet needs ks, e, d lists and width_mult ({exc})") from exc
    if settings.problems():
        raise MedkdError(f"student spec file {path}: subnet {'; '.join(settings.problems())}")
    b = require(doc, "budget", dict, path)
    try:
        budget = Budget(str(b["kind"]), float(b["value"]))
    except (KeyError, TypeError, ValueError, MedkdError) as exc:
        raise MedkdError(f"student spec file {path}: budget needs kind latency_ms|gmacs and a positive value") from exc
    img_size = require(doc, "img_size", int, path)
    measured = require(doc, "measured", dict, path)
    weights = doc.get("supernet_weights")
    weights_path = weights_digest = None
    if weights is not None:
        if not (isinstance(weights, dict) and isinstance(weights.get("path"), str)
                and isinstance(weights.get("sha256_16"), str)):
            raise MedkdError(f"student spec file {path}: supernet_weights needs path and sha256_16")
        weights_path, weights_digest = Path(weights["path"]), weights["sha256_16"]
    return SearchedStudent(path, name, settings.canonical(), budget, img_size, str(doc.get("device", "?")),
                           str(doc.get("machine", "unrecorded machine")),
                           {k: float(v) for k, v in measured.items() if isinstance(v, int | float)},
                           str(doc.get("created", "?")), weights_path, weights_digest)


def searched_student_files() -> list[Path]:
    """Spec files to register: ``$MEDKD_STUDENTS`` (files or folders), else ``.medkd/students/*.json``.

    An empty ``MEDKD_STUDENTS`` registers none (tests use that to stay independent of the checkout).
    """
    return spec_files(STUDENTS_ENV, DEFAULT_STUDENTS_DIR)


def iter_searched_students() -> Iterator[SearchedStudent]:
    """Every discovered spec file, read; two files with one name is an error naming both."""
    yield from unique_specs(searched_student_files(), read_searched_student, lambda spec: spec.name, "student spec file")
