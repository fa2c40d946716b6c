"""Which cells share a leaderboard page: one page per dataset and set of run settings.

Every ``medkd-bench run`` records its result-affecting settings and the cells
it planned (:meth:`~medkd_bench.run.store.Store.begin_run`). A page holds the
cells planned by runs with the same settings for its dataset, so a KD gain
never subtracts a baseline trained or tested under other settings, and the
page's header says which settings differ from the defaults. A cell planned by
runs with different settings (it computed the same thing under both) appears
on each of their pages. The dataset's main page, ``<dataset>.md``, holds the
default settings (or, without a default run, the most recent run's); every
other set gets ``<dataset>.<id>.md``, linked from the main page and the index.
Cells stored before runs were recorded count as a default run's.

A run records the settings it was *given*; the rest were that day's defaults.
So a page's settings are the cells' own (:func:`as_the_cells_ran`): every
dataset option and image size whose stored value differs from today's
default is named. When a default changes (synthetic-histo's ``n_train`` in
session 26), cells trained before and after the change, both "default" runs,
land on pages of their own instead of one page pairing a student of one
training split with a baseline of the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from medkd_bench.report.experiment import Entry, command_flags
from medkd_bench.run.store import CellRecord
from medkd_bench.specs import DatasetSpec

#: The settings key of cells no recorded run planned (stores older than the runs table).
DEFAULT_KEY = "{}"


@dataclass
class Page:
    """One leaderboard page: a dataset, the settings of its cells, its file name and its records."""

    dataset: str
    key: str
    settings: dict[str, Any]
    file: str
    records: list[CellRecord]
    latest_run: int

    @property
    def recorded(self) -> bool:
        """Whether a recorded run gave these settings (else: cells stored before runs were recorded)."""
        return self.latest_run > 0

    @property
    def flags(self) -> list[str]:
        return settings_flags(self.settings)

    @property
    def settings_text(self) -> str:
        """The flags, tuned options summarised (one flag per chosen option would fill the header)."""
        from medkd_bench.report.tuning import tuning_note

        plain = settings_flags({k: v for k, v in self.settings.items() if k not in ("tuned", "tune_trials")})
        text = " ".join(plain)
        note = tuning_note(self.settings)
        if note:
            text = f"{text}; {note}" if text else note
        return text or "defaults"


def dataset_settings(settings: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A run's settings as they bear on ``dataset``: other datasets' options and tuned arms left out."""
    out = {k: v for k, v in settings.items() if k not in ("dataset_options", "tuned")}
    options = settings.get("dataset_options", {}).get(dataset)
    if options:
        out["dataset_options"] = {dataset: options}
    tuned = {arm: p for arm, p in settings.get("tuned", {}).items() if arm.startswith(f"{dataset}/")}
    if tuned:
        out["tuned"] = tuned
    return out


def options_off_default(spec: DatasetSpec | None, cfg: dict[str, Any]) -> dict[str, Any]:
    """The options a cell's dataset config holds that differ from its spec's defaults today (all without a spec)."""
    defaults = dict(spec.options) if spec else {}
    return {key: value for key, value in sorted(cfg.get("options", {}).items()) if defaults.get(key, object()) != value}


def as_the_cells_ran(spec: DatasetSpec | None, settings: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the dataset's options and image size as a cell's config holds them, not as the run was given them.

    Every option whose stored value differs from today's default is named, and a given one equal to it is
    not (the same cells either way); likewise the image size. ``cfg`` is the cell's ``config["dataset"]``;
    a config without ``options`` (cells stored before they were recorded) leaves ``settings`` as given.
    """
    name = cfg.get("name")
    if not name or "options" not in cfg:
        return settings
    out = dict(settings)
    options = dict(settings.get("dataset_options", {}))
    pinned = options_off_default(spec, cfg)
    if pinned:
        options[name] = pinned
    else:
        options.pop(name, None)
    if options:
        out["dataset_options"] = options
    else:
        out.pop("dataset_options", None)
    if spec is not None and "img_size" in cfg:
        if cfg["img_size"] != spec.img_size:
            out["img_size"] = cfg["img_size"]
        else:
            out.pop("img_size", None)
    return out


def settings_entries(settings: dict[str, Any]) -> list[Entry]:
    """The ``run`` options that give these settings, as entries (:mod:`medkd_bench.report.experiment`)."""
    entries: list[Entry] = []
    if "epochs" in settings:
        entries.append(("epochs", settings["epochs"]))
    if "img_size" in settings:
        entries.append(("img-size", settings["img_size"]))
    dataset_options = {d: dict(sorted(o.items())) for d, o in sorted(settings.get("dataset_options", {}).items()) if o}
    if dataset_options:
        entries.append(("dataset-options", dataset_options))
    if settings.get("pretrained"):
        entries.append(("pretrained", True))
    if settings.get("weights"):
        entries.append(("weights", {name: f"<file with SHA-256 {digest}>"
                                    for name, digest in sorted(settings["weights"].items())}))
    method_options = {m: dict(sorted(o.items())) for m, o in sorted(settings.get("method_options", {}).items()) if o}
    if method_options:
        entries.append(("method-options", method_options))
    if "amp" in settings:
        entries.append(("amp", settings["amp"]))
    if settings.get("deterministic"):
        entries.append(("deterministic", True))
    if "compile" in settings:
        entries.append(("compile", settings["compile"]))
    if "teacher_seeds" in settings:
        entries.append(("teacher-seeds", settings["teacher_seeds"]))
    if settings.get("tuned"):  # what --tune chose: given back, a rerun trains the same final cells
        entries.append(("tuned-options", {arm: dict(sorted(p.items())) for arm, p in sorted(settings["tuned"].items())}))
    return entries


def settings_flags(settings: dict[str, Any]) -> list[str]:
    """The ``run`` flags that give these settings (the reproduce command and the page header say them)."""
    return command_flags(settings_entries(settings))


def pages_for(dataset: str, records: list[CellRecord], runs: dict[str, list[tuple[int, dict[str, Any]]]],
              spec: DatasetSpec | None = None) -> list[Page]:
    """The pages of one dataset, the main one (settings of its most recent run) first.

    ``spec``: the dataset's plugin, whose defaults the cells' own options are compared with
    (:func:`as_the_cells_ran`); without it (a dataset no installed plugin provides) a page's settings
    are the runs' as given.
    """
    by_key: dict[str, tuple[dict[str, Any], list[CellRecord], int]] = {}
    for r in records:
        planned = runs.get(r.hash) or [(0, {})]
        for run_id, settings in planned:
            own = as_the_cells_ran(spec, dataset_settings(settings, dataset), r.config.get("dataset", {}))
            key = json.dumps(own, sort_keys=True)
            _, recs, latest = by_key.setdefault(key, (own, [], 0))
            if r not in recs:
                recs.append(r)
            by_key[key] = (own, recs, max(latest, run_id))
    # Default settings keep the dataset's main page: a toy run with other settings gets a page of its own.
    ordered = sorted(by_key.items(), key=lambda kv: (kv[0] != DEFAULT_KEY, -kv[1][2]))
    pages = []
    for i, (key, (settings, recs, latest)) in enumerate(ordered):
        suffix = "" if i == 0 else "." + hashlib.sha256(key.encode()).hexdigest()[:8]
        pages.append(Page(dataset, key, settings, f"{dataset}{suffix}.md", recs, latest))
    return pages


def latest_records(records: Iterable[CellRecord]) -> dict[tuple[str, str, str, int], CellRecord]:
    """One record per (method, teacher, student, seed): the newest finished one wins."""
    out: dict[tuple[str, str, str, int], CellRecord] = {}
    for r in sorted(records, key=lambda r: r.finished_at or 0.0):
        key = (r.method, r.teacher, r.student, r.seed)
        if r.status == "done" or key not in out or out[key].status != "done":
            out[key] = r
    return out
