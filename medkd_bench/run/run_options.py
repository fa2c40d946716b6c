"""Run options: what ``medkd-bench run`` was asked for, and which of them can change a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where runs keep their store, checkpoints and caches unless ``--work-dir`` says otherwise.
DEFAULT_WORK_DIR = Path(".medkd")


@dataclass
class RunOptions:
    work_dir: Path = DEFAULT_WORK_DIR
    leaderboard_dir: Path = Path("leaderboards")
    img_size: int | None = None
    data_root: Path | None = None
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int | None = None
    #: Per-method option overrides, ``{"dkd": {"beta": 8.0}}``, parsed and checked against the specs.
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Memory budget for a teacher's cached feature and class maps (feature methods); above it the
    #: teacher runs on every batch instead.
    teacher_cache_mb: float = 2048
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
    #: At least this many timed runs, and at least ``latency_seconds`` of them (timed_metrics): 140 runs for a
    #: 7 ms model, 10 for VGG19's 240 ms instead of 30 (5 s less per VGG19 cell).
    latency_runs: int = 10
    #: ...and timing goes on until this many seconds have been timed (``--latency-seconds``): a short
    #: burst of background work then moves the median less. 0 times exactly ``latency_runs`` runs, for
    #: smoke runs and tests, whose latencies are figures of a 32 px model nobody reads.
    latency_seconds: float = 1.0
    #: Timings taken while another process held the CPU are taken again after a pause, up to this many
    #: attempts in all (``--latency-attempts``; :func:`~medkd_bench.evaluate.cost.quietest`). 1 never
    #: waits: for smoke runs and tests beside other work, whose timings nobody reads.
    latency_attempts: int = 3
    #: Leave out bad files of a real dataset (with a warning) instead of stopping at the first.
    skip_bad: bool = False
    #: Export every trained student to ONNX, check it with ONNX Runtime on the test split and time it
    #: there (:mod:`medkd_bench.deploy.onnx`); adds figures, changes none, so it is not a setting.
    onnx: bool = False
    #: ``--compile`` mode (``"off"``: eager PyTorch). A setting: compiled kernels round differently,
    #: so it is in every config hash (through the runtime's precision) and in the run's settings.
    compile_mode: str = "off"
    #: Teachers per dataset (``--teacher-seeds``, capped at ``--seeds``): 1 is one fixed teacher every
    #: student seed distils from. A setting: with more, seeds above the first distil other teachers.
    teacher_seeds: int = 1
    #: Options chosen by ``--tune N`` per arm (``dataset/teacher/student/method`` ->
    #: ``{"train.lr": ..., "temperature": ...}``): part of each tuned cell's config and of the run's settings.
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``--tune N``: the trials per arm that chose ``tuned`` (0: given back with ``--tuned-option``, or none).
    tune_trials: int = 0
    #: Seconds of training between a cell's snapshots (:mod:`medkd_bench.train.snapshots`): an interrupted
    #: cell resumes at its last one with the same result, so this changes time lost, never a figure.
    snapshot_every_s: float = 600.0


def result_settings(options: RunOptions, amp: str | None = None, deterministic: bool = False) -> dict[str, Any]:
    """What a run was given that changes its results, non-defaults only: ``{}`` is a default run.

    ``amp`` is the ``--amp`` choice where it changes some model's numerics, else ``None``
    (:func:`~medkd_bench.runtime.device.recorded_amp`).

    Recorded with every run (:meth:`~medkd_bench.run.store.Store.begin_run`), so a
    leaderboard page holds only cells computed under one set of settings and says
    which. Selections (teachers, seeds, ...) and where cells run are not settings.
    """
    from medkd_bench.models.weights import file_digest

    settings: dict[str, Any] = {}
    if options.epochs is not None:
        settings["epochs"] = options.epochs
    if options.img_size is not None:
        settings["img_size"] = options.img_size
    if options.dataset_options:
        settings["dataset_options"] = {d: dict(o) for d, o in sorted(options.dataset_options.items()) if o}
    if options.pretrained:
        settings["pretrained"] = True
    if options.weights:
        settings["weights"] = {name: file_digest(path) for name, path in sorted(options.weights.items())}
    if any(options.method_options.values()):
        settings["method_options"] = {m: dict(o) for m, o in sorted(options.method_options.items()) if o}
    if amp is not None:
        settings["amp"] = amp
    if deterministic:
        settings["deterministic"] = True
    if options.compile_mode != "off":
        settings["compile"] = options.compile_mode
    if options.teacher_seeds != 1:
        settings["teacher_seeds"] = options.teacher_seeds
    if options.tuned:
        settings["tuned"] = {arm: dict(sorted(params.items())) for arm, params in sorted(options.tuned.items())}
    if options.tune_trials:
        settings["tune_trials"] = options.tune_trials
    return settings
