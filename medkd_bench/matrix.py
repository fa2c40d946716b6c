"""Plans the teacher x student x dataset matrix and runs it cell by cell.

A cell is ``(dataset, method, teacher, student, seed)`` with method one of
``teacher`` (train a teacher on labels), ``label-only`` (train a student on
labels: the baseline) and ``kd`` (distil the teacher into the student). Each
cell's config is hashed; the hash keys the store row, the checkpoint and the
saliency maps, so a rerun skips what is finished, a KD cell finds its teacher,
and a changed setting trains anew instead of reusing stale results.

Computing a cell (train, score, write its checkpoint) is :class:`CellComputer`,
which never touches the run store; :class:`MatrixRunner` adds the store, the
explanations and the run loop. The split lets an executor (``executors.py``)
compute cells in other processes or on other machines while the driver alone
writes the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from . import agreement
from .data import PreparedData, dataset_fingerprint, prepare
from .distill import (
    EpochCallback,
    KDSettings,
    TrainResult,
    adamw_implementation,
    eval_split_predictions,
    fit,
    grad_norm_implementation,
    teacher_soft_targets,
)
from .errors import MedkdError
from .evaluate import classification_metrics, size_metrics, timed_metrics
from .explain import compute_maps, explanation_sample, panel_rows, render_panel, road_faithfulness
from .plugins import Registry
from .runtime import Runtime, machine_description, package_versions
from .specs import ModelSpec, TrainSettings
from .store import Store
from .weights import file_digest, load_weights_file

if TYPE_CHECKING:
    from .executors import Executor

SCHEMA_VERSION = 1
METHODS = ("teacher", "label-only", "kd")
MATRICES = ("full", "quick")


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    teacher: str = ""
    student: str = ""
    seed: int = 0

    @property
    def model_name(self) -> str:
        return self.teacher if self.method == "teacher" else self.student

    @property
    def role(self) -> str:
        return "teacher" if self.method == "teacher" else "student"

    def label(self) -> str:
        if self.method == "teacher":
            what = f"teacher {self.teacher}"
        elif self.method == "label-only":
            what = f"student {self.student} (labels only)"
        else:
            what = f"{self.teacher} -> {self.student} (KD)"
        return f"{self.dataset} | {what} | seed {self.seed}"


@dataclass
class RunOptions:
    work_dir: Path = Path(".medkd")
    leaderboard_dir: Path = Path("leaderboards")
    img_size: int | None = None
    data_root: Path | None = None
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int | None = None
    kd: KDSettings = field(default_factory=KDSettings)
    pretrained: bool = False
    weights: dict[str, Path] = field(default_factory=dict)
    #: Explainers to run; ``None`` or ``("all",)`` means every registered one. The default is the
    #: source study's Score-CAM: each further explainer adds about 30 s to the full embedded matrix
    #: on 2 CPU cores (ROAD imputations, sanity maps, panels), and the matrix is meant to rerun in 10 minutes.
    explainers: tuple[str, ...] | None = ("score-cam",)
    #: Test images per explanation sample (balanced over classes, seeded). Score-CAM
    #: costs one forward pass per target-layer channel per image, hence the small default.
    explain_images: int = 6
    #: Images of the sample used for the model-randomisation sanity check.
    sanity_images: int = 2
    panel_per_class: int = 1
    #: At least this many timed runs, and at least 1 s of them (timed_metrics): 140 runs for a
    #: 7 ms model, 10 for VGG19's 240 ms instead of 30 (5 s less per VGG19 cell).
    latency_runs: int = 10
    #: Leave out bad files of a real dataset (with a warning) instead of stopping at the first.
    skip_bad: bool = False


class Reporter(Protocol):
    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None: ...
    def epoch_done(self, epoch: int, epochs: int, row: dict[str, float]) -> None: ...
    def cell_finished(self, cell: Cell, status: str, detail: str) -> None: ...


class SilentReporter:
    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None:
        pass

    def epoch_done(self, epoch: int, epochs: int, row: dict[str, float]) -> None:
        pass

    def cell_finished(self, cell: Cell, status: str, detail: str) -> None:
        pass


def _check_names(kind: str, wanted: Sequence[str] | None, known: dict[str, Any]) -> list[str]:
    if not wanted:
        return sorted(known)  # stable across machines, whatever the entry-point order
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise MedkdError(
            f"unknown {kind}(s) {', '.join(repr(u) for u in unknown)} in --{kind}s "
            f"(registered: {', '.join(sorted(known)) or 'none'})"
        )
    return list(dict.fromkeys(wanted))


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
) -> list[Cell]:
    """Cells in run order: per dataset and seed, teachers first, then baselines, then KD.

    Without ``datasets``, real datasets whose local copy is missing are left
    out (:func:`unavailable_datasets` says which and why); a dataset named
    in ``datasets`` must be there. ``quick`` prefers generated datasets.
    ``seeds`` runs every cell with seeds ``seed .. seed + seeds - 1``; a KD cell
    distils the teacher trained with its own seed, so seeds stay independent.
    """
    if seeds < 1:
        raise MedkdError(f"--seeds {seeds}: expected at least 1")
    if matrix not in MATRICES:
        raise MedkdError(f"unknown --matrix {matrix!r} (choose from: {', '.join(MATRICES)})")
    ts = _check_names("teacher", teachers, registry.teachers)
    ss = _check_names("student", students, registry.students)
    ds = _check_names("dataset", datasets, registry.datasets)
    missing = unavailable_datasets(registry, data_root, ds)
    if datasets and missing:
        name, reason = next(iter(missing.items()))
        raise MedkdError(reason if name in reason else f"dataset {name!r}: {reason}")
    ds = [d for d in ds if d not in missing]
    if matrix == "quick":  # one of each: the first (alphabetically, or as filtered) after filters
        if not datasets:  # a quick look should not start by decoding a real dataset
            ds = sorted(ds, key=lambda d: registry.datasets[d].needs_root)
        ts, ss, ds = ts[:1], ss[:1], ds[:1]
    if not (ts and ss and ds):
        raise MedkdError("the matrix is empty: no teacher, student or dataset is registered or selected")
    cells: list[Cell] = []
    for d in ds:
        for k in range(seed, seed + seeds):
            cells += [Cell(d, "teacher", teacher=t, seed=k) for t in ts]
            cells += [Cell(d, "label-only", student=s, seed=k) for s in ss]
            cells += [Cell(d, "kd", teacher=t, student=s, seed=k) for t in ts for s in ss]
    return cells


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_writable(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".medkd-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise MedkdError(f"{what} {directory}: not writable ({exc.strerror or exc})") from exc


def one_line(exc: BaseException) -> str:
    """The first line of an error, prefixed by its type unless it is already a user-facing message."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, MedkdError):
        return first
    return f"{type(exc).__name__}: {first}".strip().rstrip(":")


def atomic_tmp(path: Path) -> Path:
    """A temporary sibling of ``path``, unique per host and process.

    Files are written there and renamed into place, so a reader never sees half
    a file and two workers (on one machine or sharing a work dir over the
    network) writing the same cache never interleave their bytes.
    """
    return path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")


@dataclass
class CellResult:
    """What computing a cell yields: the trained model and the record the store keeps."""

    model: nn.Module
    metrics: dict[str, Any]
    timings: dict[str, float]
    artifacts: dict[str, str]


class CellComputer:
    """Trains and scores one cell and writes its checkpoint; never reads or writes the run store.

    Everything it needs comes from the registry, the options and the work dir,
    so a worker process can rebuild it from picklable parts.
    """

    def __init__(self, registry: Registry, options: RunOptions, runtime: Runtime):
        self.registry = registry
        self.options = options
        self.runtime = runtime
        self._data: dict[str, PreparedData] = {}
        self._soft_targets: dict[str, torch.Tensor] = {}
        self._fingerprints: dict[str, Any] = {}
        self._costs: dict[tuple, dict[str, Any]] = {}
        #: Off in pool workers: cells training side by side would slow each other's timings, so the
        #: driver times them afterwards on a quiet machine (:meth:`MatrixRunner.measure_missing_costs`).
        self.measure_timings = True
        for name in options.weights:
            if name not in registry.teachers and name not in registry.students:
                raise MedkdError(f"--weights {name}=...: no teacher or student named {name!r}")
        for name, given in options.dataset_options.items():
            known = registry.get("dataset", name).options
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise MedkdError(
                    f"--dataset-option: dataset {name!r} has no option(s) {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(known)) or 'none'})"
                )
        self.ckpt_dir = options.work_dir / "checkpoints"

    # ---- configuration -------------------------------------------------
    def model_spec(self, cell: Cell) -> ModelSpec:
        return self.registry.get(cell.role, cell.model_name)

    def runtime_for(self, spec: ModelSpec) -> Runtime:
        return self.runtime.for_model(spec)

    def settings(self, spec: ModelSpec) -> TrainSettings:
        return spec.train.replace(epochs=self.options.epochs)

    def _init(self, name: str) -> str:
        if name in self.options.weights:
            return f"file:{file_digest(self.options.weights[name])}"
        return "timm-imagenet" if self.options.pretrained else "random"

    def dataset_config(self, name: str) -> dict[str, Any]:
        spec = self.registry.get("dataset", name)
        options = {**spec.options, **self.options.dataset_options.get(name, {})}
        config = {
            "name": name,
            "revision": spec.revision,
            "img_size": int(self.options.img_size or spec.img_size),
            "options": options,
            "root": str(self.options.data_root) if spec.needs_root and self.options.data_root else None,
        }
        if spec.fingerprint is not None:  # the files read and their split: a changed copy trains anew
            if name not in self._fingerprints:
                self._fingerprints[name] = dataset_fingerprint(spec, self.options.data_root, options)
            config["files"] = self._fingerprints[name]
        return config

    def config(self, cell: Cell) -> dict[str, Any]:
        spec = self.model_spec(cell)
        cfg: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "method": cell.method,
            "seed": cell.seed,
            "dataset": self.dataset_config(cell.dataset),
            "model": {"name": spec.name, "revision": spec.revision, "role": cell.role,
                      "train": asdict(self.settings(spec)), "init": self._init(spec.name),
                      "precision": self.runtime_for(spec).precision,
                      "optimizer": "adamw-" + adamw_implementation(self.runtime_for(spec).device),
                      "grad_norm": grad_norm_implementation(self.runtime_for(spec).device)},
        }
        if cell.method == "kd":
            cfg["teacher"] = self.hash(teacher_cell_of(cell))
            cfg["kd"] = asdict(self.options.kd)
        return cfg

    def hash(self, cell: Cell) -> str:
        return config_hash(self.config(cell))

    # ---- resources -----------------------------------------------------
    def data(self, name: str) -> PreparedData:
        if name not in self._data:
            spec = self.registry.get("dataset", name)
            self._data[name] = prepare(spec, self.options.img_size, self.options.data_root,
                                       self.options.dataset_options.get(name, {}),
                                       cache_dir=self.options.work_dir / "cache", skip_bad=self.options.skip_bad)
        return self._data[name]

    def load_real_data(self, cells: Sequence[Cell]) -> None:
        """Read every real dataset with unfinished cells before any training.

        A missing folder or a bad file is bad input: it stops the run with one
        line (exit 2) instead of failing, and re-reading, in every cell.
        """
        for name in dict.fromkeys(c.dataset for c in cells if not self.store.is_done(self.hash(c))):
            if self.registry.get("dataset", name).needs_root:
                self.data(name)

    def build_model(self, spec: ModelSpec, data: PreparedData) -> nn.Module:
        try:
            if self.options.pretrained and spec.name not in self.options.weights:
                if spec.build_pretrained is None:
                    raise MedkdError(f"--pretrained: {spec.name!r} has no pretrained builder")
                return spec.build_pretrained(data.num_classes, data.img_size)
            model = spec.build(data.num_classes, data.img_size)
        except MedkdError:
            raise
        except Exception as exc:
            raise MedkdError(f"building {spec.name!r} failed: {one_line(exc)}") from exc
        if spec.name in self.options.weights:
            load_weights_file(model, self.options.weights[spec.name])
        return model

    def checkpoint_path(self, cell_hash: str) -> Path:
        return self.ckpt_dir / f"{cell_hash}.safetensors"

    def save_checkpoint(self, model: nn.Module, cell_hash: str) -> Path:
        from safetensors.torch import save_file

        path = self.checkpoint_path(cell_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = atomic_tmp(path)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp))
        tmp.replace(path)
        return path

    def load_checkpoint(self, cell: Cell) -> nn.Module:
        """A cell's model, rebuilt from its checkpoint file (the caller knows the cell finished)."""
        from safetensors.torch import load_file

        path = self.checkpoint_path(self.hash(cell))
        if not path.is_file():
            raise MedkdError(f"{cell.label()} has no finished checkpoint (run it first)")
        spec = self.model_spec(cell)
        # From the dataset's spec, not its data: timing a checkpoint needs no images.
        classes = self.registry.get("dataset", cell.dataset).num_classes
        model = spec.build(classes, self.dataset_config(cell.dataset)["img_size"])
        model.load_state_dict(load_file(str(path)))
        # The model's own memory format (channels-last for OFA-595 on CPU), as in training.
        return self.runtime_for(spec).prepare_model(model).eval()

    def soft_targets(self, teacher_cell: Cell) -> torch.Tensor:
        h = self.hash(teacher_cell)
        if h not in self._soft_targets:
            path = self.options.work_dir / "soft_targets" / f"{h}.pt"
            if path.is_file():
                self._soft_targets[h] = torch.load(path, weights_only=True)
            else:
                teacher = self.load_checkpoint(teacher_cell)
                logits = teacher_soft_targets(teacher, self.data(teacher_cell.dataset),
                                              self.runtime_for(self.model_spec(teacher_cell)))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = atomic_tmp(path)
                torch.save(logits, tmp)
                tmp.replace(path)
                self._soft_targets[h] = logits
        return self._soft_targets[h]

    def cost_key(self, cell: Cell) -> tuple:
        """What cost metrics depend on: the architecture, the input size, the head's class count, the precision."""
        spec = self.model_spec(cell)
        size = self.dataset_config(cell.dataset)["img_size"]
        classes = self.registry.get("dataset", cell.dataset).num_classes
        return spec.name, spec.revision, size, classes, self.runtime_for(spec).precision

    def cost_of(self, cell: Cell, model: nn.Module | None, timed: bool = True) -> dict[str, Any]:
        """Parameters and GMACs, and with ``timed`` throughput and latency: once per :meth:`cost_key`.

        They depend on the layers, not on the weights, so OFA-595's four cells
        per dataset share one measurement (1 to 4 s each) instead of timing the
        same network four times. ``model`` may be None once :meth:`has_cost` is true.
        """
        key = self.cost_key(cell)
        _, _, size, _, _ = key
        runtime = self.runtime_for(self.model_spec(cell))
        cost = self._costs.setdefault(key, {})
        if not self.has_cost(cell, timed):
            if model is None:
                raise ValueError(f"{cell.label()}: no model to measure")
            if not cost:
                cost.update(size_metrics(model, size, runtime.device))
            if timed:
                cost.update(timed_metrics(model, size, runtime, self.options.latency_runs))
        return dict(cost)

    def has_cost(self, cell: Cell, timed: bool = True) -> bool:
        """Whether this process has measured ``cell``'s architecture already (with timings, if ``timed``)."""
        cost = self._costs.get(self.cost_key(cell), {})
        return bool(cost) and (not timed or "latency_ms" in cost)

    def compute(self, cell: Cell, timings: dict[str, float],
                on_epoch: EpochCallback | None = None) -> CellResult:
        """Train and score ``cell``, save its checkpoint; raises on failure (``timings`` keeps what was measured).

        A KD cell's teacher must be finished (its checkpoint on disk): the caller checks the store.
        """
        h = self.hash(cell)
        spec = self.model_spec(cell)
        settings = self.settings(spec)
        t0 = time.perf_counter()
        data = self.data(cell.dataset)
        teacher_logits = None
        if cell.method == "kd":
            teacher_logits = self.soft_targets(teacher_cell_of(cell))
        # Seed the initial weights too: otherwise they depend on whatever ran earlier in the process.
        torch.manual_seed(cell.seed)
        model = self.build_model(spec, data)
        timings["setup_s"] = time.perf_counter() - t0
        runtime = self.runtime_for(spec)
        result: TrainResult = fit(
            model, data, settings, runtime, seed=cell.seed, teacher_logits=teacher_logits,
            kd=self.options.kd if cell.method == "kd" else None, on_epoch=on_epoch,
        )
        timings["train_s"] = result.train_seconds
        timings["train_images_per_s"] = result.images_per_second
        self.save_checkpoint(model, h)
        t1 = time.perf_counter()
        test = data.splits["test"]
        preds = eval_split_predictions(model, data, "test", runtime)
        metrics: dict[str, Any] = classification_metrics(test.labels.tolist(), preds.tolist(), data.spec.classes)
        metrics["test_predictions"] = preds.tolist()  # for paired comparisons between cells
        metrics["test_labels"] = test.labels.tolist()  # with the predictions: CIs re-rendered without data
        metrics["best_epoch"] = result.best_epoch
        metrics["val_accuracy"] = result.best_val_accuracy
        metrics["history"] = result.history
        metrics["n_test"] = len(test)
        metrics["machine"] = machine_description(runtime)
        metrics["precision"] = runtime.precision
        # Provenance kept out of the config hash, so recording it retrains nothing.
        metrics["data_checksums"] = dict(data.checksums)
        metrics["versions"] = package_versions()
        metrics["deterministic"] = runtime.deterministic
        metrics.update(self.cost_of(cell, model, timed=self.measure_timings))
        timings["score_s"] = time.perf_counter() - t1
        timings["total_s"] = time.perf_counter() - t0
        artifacts = {"checkpoint": str(self.checkpoint_path(h).relative_to(self.options.work_dir))}
        return CellResult(model, metrics, timings, artifacts)


def teacher_cell_of(cell: Cell) -> Cell:
    """The teacher cell a KD cell distils from."""
    return Cell(cell.dataset, "teacher", teacher=cell.teacher, seed=cell.seed)


class MatrixRunner(CellComputer):
    """Runs cells (in order here, or through an executor), committing each to the store as soon as it ends.

    Only this class writes the store: on a cluster it runs on the driver.
    """

    def __init__(self, registry: Registry, options: RunOptions, store: Store, runtime: Runtime,
                 reporter: Reporter | None = None):
        super().__init__(registry, options, runtime)
        self.store = store
        self.reporter = reporter or SilentReporter()
        self.explain_counts = {"explained": 0, "explain_failed": 0}
        self._random_models: dict[str, nn.Module] = {}  # the latest only: VGG19 alone is 0.5 GB
        self.maps_dir = options.work_dir / "maps"

    def load_trained(self, cell: Cell) -> nn.Module:
        """A finished cell's model, rebuilt from its checkpoint."""
        if not self.store.is_done(self.hash(cell)):
            raise MedkdError(f"{cell.label()} has no finished checkpoint (run it first)")
        return self.load_checkpoint(cell)

    def explainer_names(self) -> list[str]:
        wanted = self.options.explainers
        names = sorted(self.registry.explainers) if not wanted or "all" in wanted else list(wanted)
        for n in names:
            self.registry.get("explainer", n)
        return names

    def sample(self, cell: Cell) -> list[int]:
        return explanation_sample(self.data(cell.dataset), self.options.explain_images, seed=cell.seed)

    def maps_path(self, key: str, explainer: str, n_images: int) -> Path:
        return self.maps_dir / f"{key}-{explainer}-{n_images}.npy"

    def _cached_maps(self, path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if path.is_file():
            return np.load(path)
        maps = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = atomic_tmp(path)
        with open(tmp, "wb") as fh:
            np.save(fh, maps)
        tmp.replace(path)
        return maps

    def maps_for(self, cell: Cell, explainer: str, model: nn.Module | None = None) -> np.ndarray | None:
        """A finished cell's saliency maps on the explanation sample (cached on disk)."""
        h = self.hash(cell)
        indices = self.sample(cell)
        path = self.maps_path(h, explainer, len(indices))
        if not path.is_file() and model is None:
            if not self.store.is_done(h):
                return None
            model = self.load_trained(cell)

        def compute() -> np.ndarray:
            assert model is not None
            spec = self.model_spec(cell)
            return compute_maps(spec, model, self.registry.get("explainer", explainer),
                                self.data(cell.dataset), indices, self.runtime_for(spec))

        return self._cached_maps(path, compute)

    def random_maps_for(self, cell: Cell, explainer: str) -> np.ndarray:
        """Maps of the same architecture with random weights (Adebayo et al., 2018), on the sanity subset."""
        spec = self.model_spec(cell)
        data = self.data(cell.dataset)
        indices = self.sample(cell)[: self.options.sanity_images]
        key = "random-" + config_hash({"model": spec.name, "dataset": self.dataset_config(cell.dataset),
                                       "seed": cell.seed, "schema": SCHEMA_VERSION,
                                       "precision": self.runtime_for(spec).precision})

        def compute() -> np.ndarray:
            if key not in self._random_models:  # one build per architecture, whatever the explainer
                torch.manual_seed(cell.seed)
                self._random_models = {key: spec.build(data.num_classes, data.img_size)}
            return compute_maps(spec, self._random_models[key], self.registry.get("explainer", explainer), data,
                                indices, self.runtime_for(spec))

        return self._cached_maps(self.maps_path(key, explainer, len(indices)), compute)

    def panel_for(self, cell: Cell, explainer: str, student_maps: np.ndarray) -> Path:
        data = self.data(cell.dataset)
        teacher_cell = Cell(cell.dataset, "teacher", teacher=cell.teacher, seed=cell.seed)
        baseline_cell = Cell(cell.dataset, "label-only", student=cell.student, seed=cell.seed)
        sample = self.sample(cell)
        rows = panel_rows(data, sample, self.options.panel_per_class)
        columns = []
        teacher_maps = self.maps_for(teacher_cell, explainer)
        if teacher_maps is not None:
            columns.append((f"teacher {cell.teacher}", teacher_maps[rows]))
        baseline = self.maps_for(baseline_cell, explainer)
        if baseline is not None:
            columns.append((f"{cell.student} labels only", baseline[rows]))
        columns.append((f"{cell.student} KD", student_maps[rows]))
        suffix = "" if cell.seed == 0 else f"__seed{cell.seed}"  # seed 0 keeps the historical name
        rel = Path("panels") / cell.dataset / explainer / f"{cell.teacher}__{cell.student}{suffix}.png"
        render_panel(
            self.options.leaderboard_dir / rel, data, [sample[r] for r in rows], columns,
            title=f"{explainer}: {cell.dataset}, {cell.teacher} -> {cell.student}",
            mask_name=data.spec.localisation_mask,
        )
        return rel

    def explanation_metrics(self, cell: Cell, explainer: str, model: nn.Module) -> tuple[dict, dict]:
        """Localisation, faithfulness and sanity for any cell; agreement with the teacher for KD cells."""
        data = self.data(cell.dataset)
        indices = self.sample(cell)
        maps = self.maps_for(cell, explainer, model)
        assert maps is not None
        seed = cell.seed
        metrics: dict[str, Any] = {"n_images": len(indices)}
        mask_name = data.spec.localisation_mask
        test_masks = data.splits["test"].masks
        if mask_name:
            masks = test_masks[mask_name][indices].numpy()
            metrics["localisation"] = {"mask": mask_name, **agreement.localisation(maps, masks, seed)}
        # Every other mask too: on synthetic-cxr the lesion says "on the evidence", the lung "on the organ".
        others = [m for m in data.spec.mask_names if m != mask_name and m in test_masks]
        if others:
            metrics["localisation_other"] = {
                m: {"mask": m, **agreement.localisation(maps, test_masks[m][indices].numpy(), seed)} for m in others
            }
        metrics["road"] = agreement.summarise(road_faithfulness(model, data, indices, maps,
                                                                self.runtime_for(self.model_spec(cell)), seed=seed),
                                              seed)
        n_sanity = min(self.options.sanity_images, len(indices))
        metrics["n_sanity"] = n_sanity
        if n_sanity:
            metrics["sanity"] = agreement.agreement(maps[:n_sanity], self.random_maps_for(cell, explainer), seed)
        artifacts: dict[str, str] = {}
        if cell.method == "kd":
            teacher_maps = self.maps_for(Cell(cell.dataset, "teacher", teacher=cell.teacher, seed=seed), explainer)
            baseline_maps = self.maps_for(Cell(cell.dataset, "label-only", student=cell.student, seed=seed),
                                          explainer)
            if teacher_maps is not None:
                metrics["agreement"] = agreement.agreement(teacher_maps, maps, seed)
                if baseline_maps is not None:
                    metrics["label_only_agreement"] = agreement.agreement(teacher_maps, baseline_maps, seed)
            artifacts["panel"] = str(self.panel_for(cell, explainer, maps))
        return metrics, artifacts

    def missing_explainers(self, cell: Cell) -> list[str]:
        """The requested explainers without a finished explanation of this cell in the store."""
        h, n = self.hash(cell), len(self.sample(cell))
        missing = []
        for explainer in self.explainer_names():
            rec = self.store.explanation(h, explainer, n, cell.seed)
            if rec is None or rec.status != "done":
                missing.append(explainer)
        return missing

    def explain_cell(self, cell: Cell, model: nn.Module | None = None) -> tuple[int, int]:
        """Run every requested explainer not yet stored for this cell: (explained, failed)."""
        h = self.hash(cell)
        n = len(self.sample(cell))
        explained = failed = 0
        for explainer in self.missing_explainers(cell):
            started = time.perf_counter()
            try:
                if model is None:
                    model = self.load_trained(cell)
                metrics, artifacts = self.explanation_metrics(cell, explainer, model)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                self.store.save_explanation(h, explainer, n, cell.seed, "failed", error=one_line(exc))
                self.reporter.cell_finished(cell, "failed", f"{explainer}: {one_line(exc)}")
                failed += 1
                continue
            metrics["seconds"] = time.perf_counter() - started
            self.store.save_explanation(h, explainer, n, cell.seed, "done", metrics, artifacts)
            explained += 1
        return explained, failed

    # ---- running ---------------------------------------------------------
    def run(self, cells: Sequence[Cell], executor: Executor | None = None) -> dict[str, int]:
        """Run ``cells`` with ``executor`` (default: in this process, in order)."""
        check_writable(self.options.work_dir, "--work-dir")
        check_writable(self.options.leaderboard_dir, "--leaderboard-dir")
        self.explainer_names()  # unknown explainer names fail before any training
        self.load_real_data(cells)
        if executor is None:
            from .executors import LocalExecutor

            executor = LocalExecutor()
        summary = executor.run(self, cells)
        self.measure_missing_costs(cells)
        return {**summary, **self.explain_counts}

    def measure_missing_costs(self, cells: Sequence[Cell]) -> int:
        """Timed cost metrics for finished cells stored without them (pool workers leave them out); how many.

        Runs after the cells, when nothing else trains, from each cell's checkpoint.
        A run interrupted before this point leaves them missing; the next run fills them in.
        """
        filled = 0
        for cell in cells:
            h = self.hash(cell)
            rec = self.store.get(h)
            if rec is None or rec.status != "done" or "latency_ms" in rec.metrics or not self.is_finished(h):
                continue
            model = None if self.has_cost(cell) else self.load_checkpoint(cell)  # one load per architecture
            self.store.update_metrics(h, self.cost_of(cell, model))
            filled += 1
        return filled

    def is_finished(self, cell_hash: str) -> bool:
        return self.store.is_done(cell_hash) and self.checkpoint_path(cell_hash).is_file()

    def check_teacher(self, cell: Cell) -> None:
        """A KD cell needs its teacher finished; raises with the teacher's own error otherwise."""
        if cell.method != "kd":
            return
        teacher_rec = self.store.get(self.hash(teacher_cell_of(cell)))
        if teacher_rec is None or teacher_rec.status != "done":
            raise MedkdError(f"teacher {cell.teacher!r} has not been trained on {cell.dataset} "
                             f"({teacher_rec.error if teacher_rec and teacher_rec.error else 'no finished cell'})")

    def begin(self, cell: Cell, index: int, total: int) -> str:
        """Mark ``cell`` running in the store; its hash."""
        h = self.hash(cell)
        self.reporter.cell_started(cell, index, total, self.settings(self.model_spec(cell)).epochs)
        self.store.start(h, cell.dataset, cell.teacher, cell.student, cell.method, cell.seed, self.config(cell))
        return h

    def record_done(self, cell: Cell, metrics: dict[str, Any], timings: dict[str, float],
                    artifacts: dict[str, str]) -> None:
        self.store.finish(self.hash(cell), metrics, timings, artifacts)
        self.reporter.cell_finished(cell, "done", f"test accuracy {metrics['accuracy']:.3f}")

    def record_failed(self, cell: Cell, message: str, timings: dict[str, float]) -> None:
        self.store.fail(self.hash(cell), message, timings)
        self.reporter.cell_finished(cell, "failed", message)

    def record_skipped(self, cell: Cell) -> None:
        self.reporter.cell_finished(cell, "skipped", "finished earlier")

    def explain_finished(self, cell: Cell, model: nn.Module | None = None) -> None:
        explained, failed = self.explain_cell(cell, model)
        self.explain_counts["explained"] += explained
        self.explain_counts["explain_failed"] += failed

    def run_cell(self, cell: Cell, index: int = 1, total: int = 1) -> str:
        """Train and score a cell unless it is finished, then explain it. Never raises for a cell's own failure."""
        model: nn.Module | None = None
        if self.is_finished(self.hash(cell)):
            status = "skipped"
            self.record_skipped(cell)
        else:
            model, status = self._train_cell(cell, index, total)
        if status != "failed":
            self.explain_finished(cell, model)
        return status

    def _train_cell(self, cell: Cell, index: int, total: int) -> tuple[nn.Module | None, str]:
        h = self.begin(cell, index, total)
        timings: dict[str, float] = {}
        try:
            self.check_teacher(cell)
            result = self.compute(cell, timings, on_epoch=self.reporter.epoch_done)
        except KeyboardInterrupt:
            self.store.fail(h, "interrupted", timings)
            raise
        except Exception as exc:
            self.record_failed(cell, one_line(exc), timings)
            return None, "failed"
        self.record_done(cell, result.metrics, result.timings, result.artifacts)
        return result.model, "done"

