"""Computing one cell: configure, train, score and checkpoint it, without touching the run store.

Everything it needs comes from the registry, the options and the work dir,
so a worker process (or a Ray node) can rebuild it from picklable parts and
compute cells while the driver alone writes the store. The cell's config
(dataset options and fingerprint, image size, model and revision, training
settings, initial weights, precision, optimiser, the distillation method with
its revision and options, and the teacher's own hash) is what :func:`~medkd_bench.run.config_hash.config_hash` hashes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medkd_bench.data.decode import DECODER_VERSION
from medkd_bench.data.prepare import SPLITS, PreparedData, dataset_fingerprint, prepare
from medkd_bench.distill.method import Distillation, bind_method, method_options
from medkd_bench.distill.taps import TARGET_LAYERS, feature_layers, layer_choices
from medkd_bench.errors import MedkdError, one_line
from medkd_bench.evaluate.cost import timed_metrics
from medkd_bench.evaluate.count_cache import cached_size_metrics
from medkd_bench.evaluate.metrics import classification_metrics
from medkd_bench.files.atomic import atomic_write
from medkd_bench.files.digests import sha256_file
from medkd_bench.models.weights import file_digest, load_weights_file
from medkd_bench.registry import Registry, unknown_names
from medkd_bench.run.artifacts import read_soft_targets, write_soft_targets
from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.config_hash import SCHEMA_VERSION, config_hash, hashed_train
from medkd_bench.run.memory import out_of_memory_named
from medkd_bench.run.plugin_errors import built, outputs_named
from medkd_bench.run.run_options import RunOptions
from medkd_bench.runtime.device import Runtime, machine_description, package_versions
from medkd_bench.specs import ModelSpec, TrainSettings
from medkd_bench.train.loop import EpochCallback, TrainResult, fit, steps_per_epoch_of
from medkd_bench.train.optim import adamw_implementation, grad_norm_implementation
from medkd_bench.train.predict import split_outputs, teacher_soft_targets
from medkd_bench.train.snapshots import Snapshots


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
                raise unknown_names("teacher or student", [name], [*registry.teachers, *registry.students],
                                    f" in --weights {name}=...")
        for name in options.method_options:
            registry.get("method", name, " in --method-option")
        for name, given in options.dataset_options.items():
            known = registry.get("dataset", name, " in --dataset-option").options
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
        """The spec's training settings; ``--epochs N`` makes it exactly N passes, without early stopping.

        Under ``--epochs`` an epoch is one pass whatever the spec's ``min_steps_per_epoch``: the flag
        says how much training a fixed schedule gets, and a smoke run on 16 images stays 16 images an epoch.
        """
        if self.options.epochs is None:
            return spec.train
        return spec.train.replace(epochs=self.options.epochs, early_stopping=False, min_steps_per_epoch=0)

    def tuned_params(self, cell: Cell) -> dict[str, Any]:
        """The options ``--tune`` chose for ``cell``'s arm (empty for teachers and untuned runs)."""
        from medkd_bench.tune.space import arm_of

        arm = arm_of(cell)
        return dict(self.options.tuned.get(arm.key, {})) if arm is not None else {}

    def cell_settings(self, cell: Cell, params: dict[str, Any] | None = None) -> TrainSettings:
        """:meth:`settings` with the training options of ``params`` (default: the cell's tuned ones) on top."""
        from medkd_bench.tune.space import split_params

        train, _ = split_params(self.tuned_params(cell) if params is None else params)
        return self.settings(self.model_spec(cell)).replace(**train)

    def cell_method_options(self, cell: Cell, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The method's options for ``cell``: the run's, with the tuned ones of ``params`` on top."""
        from medkd_bench.tune.space import split_params

        _, method = split_params(self.tuned_params(cell) if params is None else params)
        return {**self.method_options(cell.method), **method}

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
            # How their pixels were decoded: cells trained on 16-bit files read as white (decoder 1) retrain.
            config["decoder"] = DECODER_VERSION
        return config

    def config(self, cell: Cell, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """What :meth:`hash` hashes; ``params`` (a tuning trial's point) replaces the cell's tuned options."""
        spec = self.model_spec(cell)
        cfg: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "method": cell.method,
            "seed": cell.seed,
            "dataset": self.dataset_config(cell.dataset),
            "model": {"name": spec.name, "revision": spec.revision, "role": cell.role,
                      "train": hashed_train(self.cell_settings(cell, params)), "init": self._init(spec.name),
                      "precision": self.runtime_for(spec).precision,
                      "optimizer": "adamw-" + adamw_implementation(self.runtime_for(spec).device),
                      "grad_norm": grad_norm_implementation(self.runtime_for(spec).device)},
        }
        if cell.distilled:
            method = self.registry.get("method", cell.method)
            cfg["teacher"] = self.hash(teacher_cell_of(cell))
            cfg["distill"] = {"method": method.name, "revision": method.revision,
                              "options": self.cell_method_options(cell, params)}
        return cfg

    def method_options(self, name: str) -> dict[str, Any]:
        """A method's options for this run: its spec's defaults with the run's ``--method-option`` on top."""
        return method_options(self.registry.get("method", name), self.options.method_options.get(name))

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

    def build_model(self, spec: ModelSpec, data: PreparedData) -> nn.Module:
        try:
            if self.options.pretrained and spec.name not in self.options.weights:
                if spec.build_pretrained is None:
                    raise MedkdError(f"--pretrained: {spec.name!r} has no pretrained builder")
                return built(spec, spec.build_pretrained(data.num_classes, data.img_size), "build_pretrained()")
            model = built(spec, spec.build(data.num_classes, data.img_size))
        except MedkdError:
            raise
        except Exception as exc:
            raise MedkdError(f"building {spec.name!r} failed: {one_line(exc)}") from exc
        if spec.name in self.options.weights:
            load_weights_file(model, self.options.weights[spec.name])
        return model

    def checkpoint_path(self, cell_hash: str) -> Path:
        return self.ckpt_dir / f"{cell_hash}.safetensors"

    def snapshots(self, cell_hash: str) -> Snapshots:
        """Where the cell's training snapshot lives: an interrupted cell resumes from it (:mod:`~medkd_bench.train.snapshots`)."""
        return Snapshots(self.options.work_dir / "snapshots" / f"{cell_hash}.pt", key=cell_hash,
                         every_s=self.options.snapshot_every_s)

    def save_checkpoint(self, model: nn.Module, cell_hash: str) -> str:
        """Write the cell's checkpoint atomically; its SHA-256, which the store keeps and loads check."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        path = atomic_write(self.checkpoint_path(cell_hash), lambda tmp: save_file(state, str(tmp)))
        return sha256_file(path)

    def load_checkpoint(self, cell: Cell) -> nn.Module:
        """A cell's model, rebuilt from its checkpoint file (the caller knows the cell finished)."""
        from safetensors.torch import load_file

        path = self.checkpoint_path(self.hash(cell))
        if not path.is_file():
            raise MedkdError(f"{cell.label()} has no finished checkpoint (run it first)")
        spec = self.model_spec(cell)
        # From the dataset's spec, not its data: timing a checkpoint needs no images.
        classes = self.registry.get("dataset", cell.dataset).num_classes
        model = built(spec, spec.build(classes, self.dataset_config(cell.dataset)["img_size"]))
        try:
            model.load_state_dict(load_file(str(path)))
        except Exception as exc:
            raise MedkdError(f"checkpoint {path} of {cell.label()} cannot be read: {one_line(exc)}; "
                             "rerun to retrain the cell") from exc
        # The model's own memory format (channels-last for OFA-595 on CPU), as in training.
        return self.runtime_for(spec).prepare_model(model).eval()

    def checkpoint_digest(self, cell_hash: str) -> str | None:
        """The SHA-256 of a cell's checkpoint (memoised per file state), None without one: what derived files
        and rows are keyed by besides the hash (a retrained cell has the same weights only on the same CPU kind)."""
        path = self.checkpoint_path(cell_hash)
        return sha256_file(path) if path.is_file() else None

    def soft_targets(self, teacher_cell: Cell) -> torch.Tensor:
        """The teacher's logits on the training images (``(2, N, C)``, plain and flipped), cached on disk.

        The cache is named by the teacher's cell hash *and* its checkpoint's SHA-256: a teacher trained
        again (its checkpoint lost or damaged) gives the same weights only on the same kind of CPU, and
        its students must learn from the checkpoint they load, not from logits of the one it replaced.
        A cached file whose SHA-256 is not the one recorded when it was written, or that has the wrong
        shape or a non-finite value, is computed again with a warning naming it
        (:func:`~medkd_bench.run.artifacts.read_soft_targets`).
        """
        h = self.hash(teacher_cell)
        key = f"{h}-{(self.checkpoint_digest(h) or '')[:16]}"  # none: load_checkpoint below says so
        if key not in self._soft_targets:
            data = self.data(teacher_cell.dataset)
            path = self.options.work_dir / "soft_targets" / f"{key}.pt"
            expected = (2, len(data.splits["train"].labels), data.num_classes)
            cached = read_soft_targets(path, expected) if path.is_file() else None
            if cached is None:
                teacher = self.load_checkpoint(teacher_cell)
                with outputs_named(self.model_spec(teacher_cell)):  # checked per batch, so never cached wrong
                    cached = teacher_soft_targets(teacher, data, self.runtime_for(self.model_spec(teacher_cell)))
                write_soft_targets(path, cached)
            self._soft_targets[key] = cached
        return self._soft_targets[key]

    def distillation(self, cell: Cell, student: nn.Module, spec: ModelSpec, settings: TrainSettings,
                     data: PreparedData, params: dict[str, Any] | None = None) -> Distillation:
        """The cell's method bound to its student and teacher (loaded only for methods that need its maps)."""
        method = self.registry.get("method", cell.method)
        teacher_cell = teacher_cell_of(cell)
        teacher_spec = self.model_spec(teacher_cell)
        teacher = self.load_checkpoint(teacher_cell) if method.needs else None
        return bind_method(method, self.cell_method_options(cell, params), teacher_logits=self.soft_targets(teacher_cell),
                           data=data, student_runtime=self.runtime_for(spec), epochs=settings.epochs,
                           steps_per_epoch=steps_per_epoch_of(len(data.splits["train"]), settings),
                           student=student, student_spec=spec, teacher=teacher, teacher_spec=teacher_spec,
                           teacher_runtime=self.runtime_for(teacher_spec), cache_mb=self.options.teacher_cache_mb)

    def check_method_layers(self, cells: list[Cell]) -> None:
        """A method option naming a layer a planned model lacks is an error before any work starts.

        Only layers other than the models' own target layers are checked (those
        the conformance kit guarantees); each model is built once, untrained.
        """
        checked: set[tuple[str, str, str]] = set()
        for cell in cells:
            if not cell.distilled:
                continue
            options = self.cell_method_options(cell)
            for role, (option, layer) in layer_choices(self.registry.get("method", cell.method), options).items():
                name = cell.student if role == "student" else cell.teacher
                if layer == TARGET_LAYERS or (role, name, layer) in checked:
                    continue
                checked.add((role, name, layer))
                spec = self.registry.get(role, name)
                classes = self.registry.get("dataset", cell.dataset).num_classes
                model = built(spec, spec.build(classes, self.dataset_config(cell.dataset)["img_size"]))
                feature_layers(model, spec, layer, f"--method-option {cell.method}.{option}={layer}")

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
                # Counted once per architecture and input size, then read from the work dir.
                cost.update(cached_size_metrics(self.options.work_dir, key[:4], model, size, runtime.device))
            if timed:
                cost.update(timed_metrics(model, size, runtime, self.options.latency_runs, self.options.latency_seconds,
                                          attempts=self.options.latency_attempts,
                                          spec=self.model_spec(cell)))
        return dict(cost)

    def has_cost(self, cell: Cell, timed: bool = True) -> bool:
        """Whether this process has measured ``cell``'s architecture already (with timings, if ``timed``)."""
        cost = self._costs.get(self.cost_key(cell), {})
        return bool(cost) and (not timed or "latency_ms" in cost)

    def compute(self, cell: Cell, timings: dict[str, float],
                on_epoch: EpochCallback | None = None) -> CellResult:
        """Train and score ``cell``, save its checkpoint; raises on failure (``timings`` keeps what was measured).

        A distilled cell's teacher must be finished (its checkpoint on disk): the caller checks the store.
        """
        h = self.hash(cell)
        spec = self.model_spec(cell)
        settings = self.cell_settings(cell)
        t0, cpu0 = time.perf_counter(), time.process_time()
        # A teacher trains on its dataset's teacher split where it has one (DatasetSpec.teacher_split).
        data = self.data(cell.dataset).for_teacher() if cell.role == "teacher" else self.data(cell.dataset)
        if cell.distilled:  # the teacher's soft targets first: they may run the teacher (cached after)
            self.soft_targets(teacher_cell_of(cell))
        # Seed the initial weights too: otherwise they depend on whatever ran earlier in the process.
        torch.manual_seed(cell.seed)
        model = self.build_model(spec, data)
        runtime = self.runtime_for(spec)
        distill = self.distillation(cell, model, spec, settings, data) if cell.distilled else None
        timings["setup_s"] = time.perf_counter() - t0
        with outputs_named(spec), out_of_memory_named(cell, settings, runtime):
            result: TrainResult = fit(model, data, settings, runtime, seed=cell.seed, distill=distill,
                                      on_epoch=on_epoch, snapshots=self.snapshots(h))
        timings["warmup_s"] = result.warmup_seconds
        timings["train_s"] = result.train_seconds
        timings["train_cpu_s"] = result.train_cpu_seconds
        timings["train_images_per_s"] = result.images_per_second
        checkpoint_sha256 = self.save_checkpoint(model, h)
        t1 = time.perf_counter()
        test = data.splits["test"]
        with outputs_named(spec), out_of_memory_named(cell, settings, runtime, "scoring"):
            preds, probs = split_outputs(model if result.forward is None else result.forward, data, "test", runtime)
        metrics: dict[str, Any] = classification_metrics(test.labels.tolist(), preds, data.spec.classes)
        metrics["test_predictions"] = preds  # for paired comparisons between cells
        metrics["test_probabilities"] = probs  # ROC AUC and calibration, re-rendered without the model
        metrics["test_labels"] = test.labels.tolist()  # with the predictions: CIs re-rendered without data
        metrics["best_epoch"] = result.best_epoch
        metrics["epochs_run"] = result.epochs_run
        metrics["stopped"] = result.stopped
        metrics["val_accuracy"] = result.best_val_accuracy
        metrics["history"] = result.history
        metrics["n_test"] = len(test)
        metrics["n_train"] = len(data.splits["train"])
        metrics["machine"] = machine_description(runtime)
        metrics["precision"] = runtime.precision
        # Provenance kept out of the config hash, so recording it retrains nothing.
        metrics["data_checksums"] = {s: data.checksums[s] for s in SPLITS}  # the splits this cell used
        metrics["versions"] = package_versions()
        metrics["deterministic"] = runtime.deterministic
        if result.resumed_from_epoch:  # provenance: a resumed cell's weights are those of an uninterrupted one
            metrics["resumed_from_epoch"] = result.resumed_from_epoch
        if distill is not None:  # where the teacher's feature maps came from (both are exact; speed differs)
            metrics["teacher_outputs"] = distill.teacher.path
            # Which training of the teacher it learned from: a teacher trained again may differ (another CPU).
            metrics["teacher_checkpoint_sha256"] = self.checkpoint_digest(self.hash(teacher_cell_of(cell)))
        metrics.update(self.cost_of(cell, model, timed=self.measure_timings))
        timings["score_s"] = time.perf_counter() - t1
        timings["total_s"] = time.perf_counter() - t0 + result.earlier_seconds  # with time before a resume
        timings["total_cpu_s"] = time.process_time() - cpu0 + result.earlier_cpu_seconds
        artifacts = {"checkpoint": str(self.checkpoint_path(h).relative_to(self.options.work_dir)),
                     "checkpoint_sha256": checkpoint_sha256}
        return CellResult(model, metrics, timings, artifacts)
