"""What produced a leaderboard: package versions, machines, data checksums, and the command.

Everything here is read back from the stored cells (config and metrics), so a
re-rendered leaderboard states what its rows were trained with, not what is
installed at render time. The reproduce command is rebuilt from the recorded
configs by comparing them with the plugins' defaults: only non-default
options appear, so the command is short and exact.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from medkd_bench.evaluate.stats import RESAMPLES
from medkd_bench.registry import Registry
from medkd_bench.run.options import RunOptions
from medkd_bench.run.store import CellRecord, ExplanationRecord
from medkd_bench.specs import BASE_METHODS
from medkd_bench.system.runtime import PROVENANCE_PACKAGES

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
    """Each split's checksum, or every distinct set when cells saw different data."""
    seen: list[str] = []
    for r in records:
        c = r.metrics.get("data_checksums")
        text = (", ".join(f"{k} `{c[k]}`" for k in ("train", "val", "test") if k in c) if c
                else "not recorded (cells stored before checksums were recorded)")
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) or "-"


def _seed_flags(seeds: Sequence[int]) -> list[list[str]]:
    """``--seed K --seeds N`` for a contiguous range, else one flag set per seed."""
    s = sorted(set(seeds))
    if not s:
        return [[]]
    if s == list(range(s[0], s[0] + len(s))):
        flags = [] if s[0] == 0 else ["--seed", str(s[0])]
        return [flags + ([] if len(s) == 1 else ["--seeds", str(len(s))])]
    return [["--seed", str(k)] for k in s]


def _dataset_flags(registry: Registry, cfg: dict[str, Any]) -> list[str]:
    spec = registry.datasets.get(cfg.get("name", ""))
    flags: list[str] = []
    if "img_size" in cfg and (spec is None or cfg["img_size"] != spec.img_size):
        flags += ["--img-size", str(cfg["img_size"])]
    defaults = dict(spec.options) if spec else {}
    for key, value in sorted(cfg.get("options", {}).items()):
        if defaults.get(key, object()) != value:
            flags += ["--dataset-option", f"{cfg['name']}.{key}={value}"]
    if cfg.get("root"):
        flags += ["--data-root", cfg["root"]]
    return flags


def _model_flags(registry: Registry, records: Sequence[CellRecord]) -> list[str]:
    flags: list[str] = []
    epochs = {r.config["model"]["train"]["epochs"] for r in records if "model" in r.config}
    differs = False
    for r in records:
        model = r.config.get("model", {})
        spec = registry.teachers.get(model.get("name")) or registry.students.get(model.get("name"))
        if spec is None or spec.train.epochs != model.get("train", {}).get("epochs"):
            differs = True
    if len(epochs) == 1 and differs:
        flags += ["--epochs", str(epochs.pop())]
    inits = {r.config["model"]["name"]: r.config["model"].get("init", "random") for r in records if "model" in r.config}
    if "timm-imagenet" in inits.values():
        flags.append("--pretrained")
    for name, init in sorted(inits.items()):
        if init.startswith("file:"):
            flags += ["--weights", f"{name}=<file with digest {init.removeprefix('file:')}>"]
    options: dict[str, dict[str, Any]] = {}
    for r in records:
        distill = r.config.get("distill") or {}
        spec = registry.methods.get(distill.get("method", ""))
        for key, value in sorted(distill.get("options", {}).items()):
            if spec is None or spec.options.get(key, object()) != value:
                options.setdefault(distill["method"], {})[key] = value
    for method, given in sorted(options.items()):
        flags += [f for key, value in given.items() for f in ("--method-option", f"{method}.{key}={value}")]
    return flags


def reproduce_commands(registry: Registry, dataset: str, records: Sequence[CellRecord],
                       explanations: Sequence[ExplanationRecord], resamples: int = RESAMPLES,
                       settings_flags: Sequence[str] | None = None) -> list[str]:
    """The ``medkd-bench run`` command(s) that retrain exactly these rows (usually one).

    ``settings_flags``: the flags of the settings the page's runs recorded; without them
    (cells stored before runs were recorded) they are inferred from the cells' configs.
    """
    done = [r for r in records if r.status == "done"]
    if not done:
        return []
    teachers = sorted({r.teacher for r in done if r.teacher})
    students = sorted({r.student for r in done if r.student})
    base = ["medkd-bench", "run", "--datasets", dataset]
    if teachers:
        base += ["--teachers", ",".join(teachers)]
    if students:
        base += ["--students", ",".join(students)]
    methods = sorted({r.method for r in done if r.method not in BASE_METHODS})
    if methods:
        base += ["--methods", ",".join(methods)]
    if settings_flags is None:
        base += _dataset_flags(registry, done[0].config.get("dataset", {"name": dataset}))
        base += _model_flags(registry, done)
        if any(r.metrics.get("deterministic") for r in done):
            base.append("--deterministic")
    else:
        base += list(settings_flags)
        root = done[0].config.get("dataset", {}).get("root")
        if root:
            base += ["--data-root", root]
    n_images = max((e.n_images for e in explanations if e.status == "done"), default=DEFAULT_EXPLAIN_IMAGES)
    if n_images != DEFAULT_EXPLAIN_IMAGES:
        base += ["--explain-images", str(n_images)]
    n_sanity = max((e.metrics.get("n_sanity", 0) for e in explanations if e.status == "done"),
                   default=DEFAULT_SANITY_IMAGES)
    if explanations and n_sanity != min(DEFAULT_SANITY_IMAGES, n_images):
        base += ["--sanity-images", str(n_sanity)]
    if resamples != RESAMPLES:
        base += ["--bootstrap", str(resamples)]
    return [shlex.join(base + seeds) for seeds in _seed_flags([r.seed for r in done])]
