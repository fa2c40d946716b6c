"""Explanations of finished cells: saliency maps, their metrics and the teacher / student panels.

Every model of the matrix is explained on the same seeded sample of test
images (:func:`medkd_bench.explain.maps.explanation_sample`), so a KD
student's maps can be compared with its teacher's and its label-only
baseline's number by number (agreement) and picture by picture (panels).
Maps are cached in the work dir per cell hash, explainer and sample size.
Explaining never writes the run store: :meth:`CellExplanations.explain`
returns one :class:`~medkd_bench.run.outcomes.ExplanationResult` per
explainer, and the driver stores each as a row of the explanation table,
keyed by (cell, explainer), so a rerun computes only the explainers still
missing. It reads finished cells through
:class:`~medkd_bench.run.finished.FinishedCells`: the store on the driver, the
driver's snapshot of the rows it needs in a pool worker.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medkd_bench.errors import one_line
from medkd_bench.explain import agreement
from medkd_bench.explain.faithfulness import road_faithfulness
from medkd_bench.explain.maps import compute_maps, explanation_sample
from medkd_bench.explain.panels import PanelColumn, panel_rows, render_panel, stored_predictions
from medkd_bench.files.digests import verified, write_recorded
from medkd_bench.files.paths import path_inside
from medkd_bench.messages import warn
from medkd_bench.run.cells import Cell, baseline_cell_of, teacher_cell_of
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.config_hash import SCHEMA_VERSION, config_hash
from medkd_bench.run.finished import FinishedCells
from medkd_bench.run.outcomes import ExplanationResult
from medkd_bench.run.plugin_errors import built
from medkd_bench.run.records import StoreError
from medkd_bench.train.finite import require_finite_array


class CellExplanations:
    """Computes the requested explainers' results for finished cells; the driver stores them."""

    def __init__(self, computer: CellComputer, finished: FinishedCells):
        self.computer = computer
        self.finished = finished
        self._random_models: dict[str, nn.Module] = {}  # the latest only: VGG19 alone is 0.5 GB
        self.maps_dir = computer.options.work_dir / "maps"

    def explainer_names(self) -> list[str]:
        """The run's explainers (``--explainers``; every registered one for ``all``); unknown names are errors."""
        return explainer_names(self.computer)

    def sample(self, cell: Cell) -> list[int]:
        return explanation_sample(self.computer.data(cell.dataset), self.computer.options.explain_images, seed=cell.seed)

    def maps_path(self, key: str, explainer: str, n_images: int) -> Path:
        return path_inside(self.maps_dir, f"{key}-{explainer}-{n_images}.npy")

    def _cached_maps(self, path: Path, n_images: int, compute: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        """Maps from ``path`` if they are the bytes written, else ``compute()``d, checked and cached (None if none).

        Cached maps are used only if their SHA-256 is the one recorded when they
        were written (:mod:`medkd_bench.files.digests`: ``np.load`` takes any
        bytes of the right length), and then only if they are ``n_images`` finite
        maps within [0, 1]; otherwise they are computed again, with a warning.
        """
        then = "computing them again"
        if path.is_file() and verified(path, "saliency maps", then, plural=True):
            try:
                return _checked_maps(np.load(path), n_images)
            except Exception as exc:
                warn(f"saliency maps {path} are damaged ({one_line(exc)}): {then}")
        maps = compute()
        if maps is None:
            return None
        require_finite_array(maps, f"saliency maps for {path.name}")

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.save would append .npy to a path
                np.save(fh, maps)

        write_recorded(path, save)
        return maps

    def maps_key(self, cell_hash: str) -> str:
        """What a cell's cached maps are named by: its hash and its checkpoint's SHA-256 (the hash alone without one).

        A cell trained again after its checkpoint was lost gives the same weights only on the same kind of
        CPU; maps of the checkpoint it replaced must not stand for the new one, nor a retrained teacher's
        old maps for the teacher a student is compared with.
        """
        digest = self.computer.checkpoint_digest(cell_hash)
        return f"{cell_hash}-{digest[:16]}" if digest else cell_hash

    def maps_for(self, cell: Cell, explainer: str, model: nn.Module | None = None) -> np.ndarray | None:
        """A finished cell's saliency maps on the explanation sample (cached on disk); None if it has none yet."""
        h = self.computer.hash(cell)
        indices = self.sample(cell)

        def compute() -> np.ndarray | None:
            trained = model
            if trained is None:
                if not self.finished.is_finished(h):  # done, and its checkpoint the one the store recorded
                    return None
                trained = self.finished.load_trained(cell)
            spec = self.computer.model_spec(cell)
            return compute_maps(spec, trained, self.computer.registry.get("explainer", explainer),
                                self.computer.data(cell.dataset), indices, self.computer.runtime_for(spec))

        return self._cached_maps(self.maps_path(self.maps_key(h), explainer, len(indices)), len(indices), compute)

    def random_maps_for(self, cell: Cell, explainer: str) -> np.ndarray:
        """Maps of the same architecture with random weights (Adebayo et al., 2018), on the sanity subset."""
        spec = self.computer.model_spec(cell)
        data = self.computer.data(cell.dataset)
        indices = self.sample(cell)[: self.computer.options.sanity_images]
        key = "random-" + config_hash({"model": spec.name, "dataset": self.computer.dataset_config(cell.dataset),
                                       "seed": cell.seed, "schema": SCHEMA_VERSION,
                                       "precision": self.computer.runtime_for(spec).precision})

        def compute() -> np.ndarray:
            if key not in self._random_models:  # one build per architecture, whatever the explainer
                torch.manual_seed(cell.seed)
                self._random_models = {key: built(spec, spec.build(data.num_classes, data.img_size))}
            return compute_maps(spec, self._random_models[key], self.computer.registry.get("explainer", explainer), data,
                                indices, self.computer.runtime_for(spec))

        maps = self._cached_maps(self.maps_path(key, explainer, len(indices)), len(indices), compute)
        assert maps is not None
        return maps

    def panel_for(self, cell: Cell, explainer: str, student_maps: np.ndarray) -> Path:
        """Draw the cell's teacher / label-only / distilled panel; its path relative to the leaderboard dir.

        The file is named by the cell's config hash and the sample size, the key of
        the maps it draws: cells of other settings (``n_test=12``, other epochs) have
        other hashes, so a run under other settings draws a panel of its own instead of
        overwriting the one another settings' page links.
        """
        data = self.computer.data(cell.dataset)
        teacher_cell, baseline_cell = teacher_cell_of(cell), baseline_cell_of(cell)
        sample = self.sample(cell)
        rows = panel_rows(data, sample, self.computer.options.panel_per_class)
        indices = [sample[r] for r in rows]
        n_test = len(data.splits["test"])

        def column(name: str, of: Cell, maps: np.ndarray) -> PanelColumn:
            """The cell's maps on the panel rows, with the predictions its store row recorded when it was scored."""
            record = self.finished.row(of)
            predictions = stored_predictions(record.metrics, indices, n_test) if record is not None else None
            return PanelColumn(name, maps[rows], predictions)

        columns = []
        teacher_maps = self.maps_for(teacher_cell, explainer)
        if teacher_maps is not None:
            columns.append(column(f"teacher {cell.teacher}", teacher_cell, teacher_maps))
        baseline = self.maps_for(baseline_cell, explainer)
        if baseline is not None:
            columns.append(column(f"{cell.student} labels only", baseline_cell, baseline))
        columns.append(column(f"{cell.student} {cell.method}", cell, student_maps))
        suffix = "" if cell.seed == 0 else f"__seed{cell.seed}"
        board_dir = self.computer.options.leaderboard_dir
        path = path_inside(board_dir, "panels", cell.dataset, explainer,
                           f"{cell.teacher}__{cell.student}__{cell.method}{suffix}__{self.computer.hash(cell)}"
                           f"-{len(sample)}.png")
        rel = path.relative_to(board_dir)
        render_panel(
            path, data, indices, columns,
            title=f"{explainer}: {cell.dataset}, {cell.teacher} -> {cell.student} ({cell.method})",
            mask_name=data.spec.localisation_mask,
        )
        return rel

    def explanation_metrics(self, cell: Cell, explainer: str, model: nn.Module) -> tuple[dict, dict]:
        """Localisation, faithfulness and sanity for any cell; agreement with the teacher for distilled cells."""
        data = self.computer.data(cell.dataset)
        indices = self.sample(cell)
        maps = self.maps_for(cell, explainer, model)
        assert maps is not None
        seed = cell.seed
        metrics: dict[str, Any] = {"n_images": len(indices)}
        digest = self.computer.checkpoint_digest(self.computer.hash(cell))
        if digest:  # which weights these maps are of (a cell trained again may differ: see maps_key)
            metrics["checkpoint_sha256"] = digest
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
                                                                self.computer.runtime_for(self.computer.model_spec(cell)), seed=seed),
                                              seed)
        n_sanity = min(self.computer.options.sanity_images, len(indices))
        metrics["n_sanity"] = n_sanity
        if n_sanity:
            metrics["sanity"] = agreement.agreement(maps[:n_sanity], self.random_maps_for(cell, explainer), seed)
        artifacts: dict[str, str] = {}
        if cell.distilled:
            teacher_maps = self.maps_for(teacher_cell_of(cell), explainer)
            baseline_maps = self.maps_for(baseline_cell_of(cell), explainer)
            if teacher_maps is not None:
                metrics["agreement"] = agreement.agreement(teacher_maps, maps, seed)
                metrics["teacher_checkpoint_sha256"] = self.computer.checkpoint_digest(self.computer.hash(teacher_cell_of(cell)))
                if baseline_maps is not None:
                    metrics["label_only_agreement"] = agreement.agreement(teacher_maps, baseline_maps, seed)
            artifacts["panel"] = str(self.panel_for(cell, explainer, maps))
        return metrics, artifacts

    def explain(self, cell: Cell, explainers: Sequence[str], model: nn.Module | None = None,
                phase: Callable[[str], None] = lambda text: None) -> list[ExplanationResult]:
        """Run ``explainers`` on a finished cell (``model``: its trained model, else loaded); one result each.

        An explainer's own error is a failed result (one line and its
        traceback); the next explainer still runs.
        """
        n = len(self.sample(cell))
        results = []
        for explainer in explainers:
            started = time.perf_counter()
            phase(f"explaining {cell.label()} with {explainer} ({n} images)")
            try:
                if model is None:
                    model = self.finished.load_trained(cell)
                metrics, artifacts = self.explanation_metrics(cell, explainer, model)
            except (KeyboardInterrupt, StoreError):
                raise
            except Exception as exc:
                results.append(ExplanationResult(explainer, n, cell.seed, "failed", error=one_line(exc),
                                                 traceback=traceback.format_exc()))
                continue
            metrics["seconds"] = time.perf_counter() - started
            results.append(ExplanationResult(explainer, n, cell.seed, "done", metrics, artifacts))
        return results


#: How far a cached map may stray outside [0, 1]: the explainers' own rounding, nothing a flipped bit gives.
MAP_RANGE_SLACK = 1e-6


def _checked_maps(maps: np.ndarray, n_images: int) -> np.ndarray:
    """``maps`` if they are ``n_images`` finite maps within [0, 1]; ValueError (or NonFiniteError) saying why not."""
    if maps.ndim != 3 or len(maps) != n_images:
        raise ValueError(f"expected {n_images} maps, found an array of shape {maps.shape}")
    require_finite_array(maps, "cached maps")
    if maps.size and (maps.min() < -MAP_RANGE_SLACK or maps.max() > 1 + MAP_RANGE_SLACK):
        raise ValueError(f"values from {maps.min():.3g} to {maps.max():.3g}, outside [0, 1]")
    return maps


def explainer_names(computer: CellComputer) -> list[str]:
    """The run's explainers (``--explainers``; every registered one for ``all``); unknown names are errors.

    A function of the options alone, so a run checks the names before it writes anything.
    """
    wanted = computer.options.explainers
    names = sorted(computer.registry.explainers) if not wanted or "all" in wanted else list(wanted)
    for n in names:
        computer.registry.get("explainer", n, " in --explainers")
    return names
