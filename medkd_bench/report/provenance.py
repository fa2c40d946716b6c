"""What produced a leaderboard: package versions, machines, data checksums, and the command.

Everything here is read back from the stored cells (config and metrics), so a
re-rendered leaderboard states what its rows were trained with, not what is
installed at render time. The reproduce command is rebuilt from the recorded
configs by comparing them with the plugins' defaults: only non-default
options appear, so the command is short and exact. The same options are
also given as a TOML experiment file (``run --config``), from the same entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medkd_bench.evaluate.stats import RESAMPLES
from medkd_bench.registry import Registry
from medkd_bench.report.experiment import Entry, command_flags
from medkd_bench.report.pages_by_settings import (
    as_the_cells_ran,
    options_off_default,
    settings_entries,
)
from medkd_bench.run.run_options import RunOptions
from medkd_bench.run.store import CellRecord, ExplanationRecord
from medkd_bench.runtime.device import PROVENANCE_PACKAGES
from medkd_bench.specs import BASE_METHODS

#: The `run` defaults a recorded setting is compared with: one source, RunOptions (cli.py uses the same).
DEFAULT_EXPLAIN_IMAGES = RunOptions.explain_images


DEFAULT_SANITY_IMAGES = RunOptions.sanity_images


def versions_text(records: Sequence[CellRecord]) -> str:
    """``medkd-bench 0.1.0, torch 2.14.1, ...``; one entry per distinct set, in order of first use."""
    seen: list[str] = []
    for r in records:
        v = r.metrics.get("versions")
        text = (", ".join(f"{p} {v.get(p, '?')}" for p in PROVENANCE_PACKAGES) if v
                else "not recorded (cells stored before versions were recorded)")
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) or "-"


def checksums_text(records: Sequence[CellRecord]) -> str:
    """Each split's checksum, or every distinct set when cells saw different data.

    A teacher trained on its dataset's teacher split has its own train checksum: its set is
    labelled "teachers", so the page does not read as students that saw different data.
    """
    def text(r: CellRecord) -> str:
        c = r.metrics.get("data_checksums")
        return (", ".join(f"{k} `{c[k]}`" for k in ("train", "val", "test") if k in c) if c
                else "not recorded (cells stored before checksums were recorded)")

    texts = [(r.method == "teacher", text(r)) for r in records]
    students = {t for is_teacher, t in texts if not is_teacher}
    seen: list[str] = []
    for is_teacher, t in sorted(texts, key=lambda pair: pair[0]):  # the students' data first
        shown = f"teachers: {t}" if is_teacher and t not in students else t
        if shown not in seen:
            seen.append(shown)
    return "; ".join(seen) or "-"


def _seed_entries(seeds: Sequence[int]) -> list[list[Entry]]:
    """``seed K, seeds N`` for a contiguous range, else one entry set (one run) per seed."""
    s = sorted(set(seeds))
    if not s:
        return [[]]
    if s == list(range(s[0], s[0] + len(s))):
        entries: list[Entry] = [] if s[0] == 0 else [("seed", s[0])]
        return [entries + ([] if len(s) == 1 else [("seeds", len(s))])]
    return [[("seed", k)] for k in s]


def _seed_flags(seeds: Sequence[int]) -> list[list[str]]:
    """``--seed K --seeds N`` for a contiguous range, else one flag set per seed."""
    return [command_flags(entries) for entries in _seed_entries(seeds)]


def _dataset_entries(registry: Registry, cfg: dict[str, Any]) -> list[Entry]:
    spec = registry.datasets.get(cfg.get("name", ""))
    entries: list[Entry] = []
    if "img_size" in cfg and (spec is None or cfg["img_size"] != spec.img_size):
        entries.append(("img-size", cfg["img_size"]))
    options = options_off_default(spec, cfg)
    if options:
        entries.append(("dataset-options", {cfg["name"]: options}))
    if cfg.get("root"):
        entries.append(("data-root", cfg["root"]))
    return entries


def _model_entries(registry: Registry, records: Sequence[CellRecord]) -> list[Entry]:
    entries: list[Entry] = []
    epochs = {r.config["model"]["train"]["epochs"] for r in records if "model" in r.config}
    differs = False
    for r in records:
        model = r.config.get("model", {})
        spec = registry.teachers.get(model.get("name")) or registry.students.get(model.get("name"))
        train = model.get("train", {})
        # A fixed schedule (``--epochs N``) where the spec stops on a plateau needs the flag even when N is its cap.
        if spec is None or (spec.train.epochs, spec.train.early_stopping) != (train.get("epochs"),
                                                                            train.get("early_stopping", False)):
            differs = True
    if len(epochs) == 1 and differs:
        entries.append(("epochs", epochs.pop()))
    inits = {r.config["model"]["name"]: r.config["model"].get("init", "random") for r in records if "model" in r.config}
    if "timm-imagenet" in inits.values():
        entries.append(("pretrained", True))
    weights = {name: f"<file with digest {init.removeprefix('file:')}>"
               for name, init in sorted(inits.items()) if init.startswith("file:")}
    if weights:
        entries.append(("weights", weights))
    options: dict[str, dict[str, Any]] = {}
    for r in records:
        distill = r.config.get("distill") or {}
        spec = registry.methods.get(distill.get("method", ""))
        for key, value in sorted(distill.get("options", {}).items()):
            if spec is None or spec.options.get(key, object()) != value:
                options.setdefault(distill["method"], {})[key] = value
    if options:
        entries.append(("method-options", dict(sorted(options.items()))))
    return entries


def reproduce_entries(registry: Registry, dataset: str, records: Sequence[CellRecord],
                      explanations: Sequence[ExplanationRecord], resamples: int = RESAMPLES,
                      settings: dict[str, Any] | None = None) -> list[list[Entry]]:
    """The options of the ``medkd-bench run``(s) that retrain exactly these rows (usually one run).

    ``settings``: the settings the page's runs recorded; without them (cells
    stored before runs were recorded) they are inferred from the cells' configs.
    """
    done = [r for r in records if r.status == "done"]
    if not done:
        return []
    teachers = sorted({r.teacher for r in done if r.teacher})
    students = sorted({r.student for r in done if r.student})
    base: list[Entry] = [("datasets", [dataset])]
    if teachers:
        base.append(("teachers", teachers))
    if students:
        base.append(("students", students))
    methods = sorted({r.method for r in done if r.method not in BASE_METHODS})
    if methods:
        base.append(("methods", methods))
    if settings is None:
        base += _dataset_entries(registry, done[0].config.get("dataset", {"name": dataset}))
        base += _model_entries(registry, done)
        if any(r.metrics.get("deterministic") for r in done):
            base.append(("deterministic", True))
    else:
        base += settings_entries(as_the_cells_ran(registry.datasets.get(dataset), settings,
                                                         done[0].config.get("dataset", {})))
        root = done[0].config.get("dataset", {}).get("root")
        if root:
            base.append(("data-root", root))
    n_images = max((e.n_images for e in explanations if e.status == "done"), default=DEFAULT_EXPLAIN_IMAGES)
    if n_images != DEFAULT_EXPLAIN_IMAGES:
        base.append(("explain-images", n_images))
    n_sanity = max((e.metrics.get("n_sanity", 0) for e in explanations if e.status == "done"),
                   default=DEFAULT_SANITY_IMAGES)
    if explanations and n_sanity != min(DEFAULT_SANITY_IMAGES, n_images):
        base.append(("sanity-images", n_sanity))
    if resamples != RESAMPLES:
        base.append(("bootstrap", resamples))
    return [base + seeds for seeds in _seed_entries([r.seed for r in done])]

