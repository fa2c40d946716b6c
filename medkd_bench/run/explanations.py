"""Explanations of finished cells: saliency maps, their metrics and the teacher / student panels.

Every model of the matrix is explained on the same seeded sample of test
images (:func:`medkd_bench.explain.maps.explanation_sample`), so a KD
student's maps can be compared with its teacher's and its label-only
baseline's number by number (agreement) and picture by picture (panels).
Maps are cached in the work dir per cell hash, explainer and sample size;
the results go to the store's explanation table, one row per (cell,
explainer), so a rerun computes only the explainers still missing.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.errors import one_line
from medkd_bench.explain import agreement
from medkd_bench.explain.faithfulness import road_faithfulness
from medkd_bench.explain.maps import compute_maps, explanation_sample
from medkd_bench.explain.panels import PanelColumn, panel_rows, render_panel, stored_predictions
from medkd_bench.registry import Registry
from medkd_bench.run.cells import Cell, baseline_cell_of, teacher_cell_of
from medkd_bench.run.computer import built
from medkd_bench.run.config import SCHEMA_VERSION, config_hash
from medkd_bench.run.options import Reporter, RunOptions
from medkd_bench.run.store import Store, StoreError
from medkd_bench.specs import ModelSpec
from medkd_bench.system.digests import verified, write_recorded
from medkd_bench.system.files import path_inside
from medkd_bench.system.messages import warn
from medkd_bench.system.runtime import Runtime
from medkd_bench.train.finite import require_finite_array


class Host(Protocol):
    """What explaining needs from the runner (:class:`medkd_bench.run.runner.MatrixRunner`)."""

    registry: Registry
    options: RunOptions
    store: Store
    reporter: Reporter

    def hash(self, cell: Cell) -> str: ...
    def data(self, name: str) -> PreparedData: ...
    def model_spec(self, cell: Cell) -> ModelSpec: ...
    def runtime_for(self, spec: ModelSpec) -> Runtime: ...
    def dataset_config(self, name: str) -> dict[str, Any]: ...
    def load_trained(self, cell: Cell) -> nn.Module: ...


class CellExplanations:
    """Computes and stores the requested explainers' results for the cells a runner runs."""

    def __init__(self, runner: Host):
        self.runner = runner
        self._random_models: dict[str, nn.Module] = {}  # the latest only: VGG19 alone is 0.5 GB
        self.maps_dir = runner.options.work_dir / "maps"

    def explainer_names(self) -> list[str]:
        wanted = self.runner.options.explainers
        names = sorted(self.runner.registry.explainers) if not wanted or "all" in wanted else list(wanted)
        for n in names:
            self.runner.registry.get("explainer", n, " in --explainers")
        return names

    def sample(self, cell: Cell) -> list[int]:
        return explanation_sample(self.runner.data(cell.dataset), self.runner.options.explain_images, seed=cell.seed)

    def maps_path(self, key: str, explainer: str, n_images: int) -> Path:
        return path_inside(self.maps_dir, f"{key}-{explainer}-{n_images}.npy")

    def _cached_maps(self, path: Path, n_images: int, compute: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        """Maps from ``path`` if they are the bytes written, else ``compute()``d, checked and cached (None if none).

        Cached maps are used only if their SHA-256 is the one recorded when they
        were written (:mod:`medkd_bench.system.digests`: ``np.load`` takes any
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

    def maps_for(self, cell: Cell, explainer: str, model: nn.Module | None = None) -> np.ndarray | None:
        """A finished cell's saliency maps on the explanation sample (cached on disk); None if it has none yet."""
        h = self.runner.hash(cell)
        indices = self.sample(cell)

        def compute() -> np.ndarray | None:
            trained = model
            if trained is None:
                if not self.runner.is_finished(h):  # done, and its checkpoint the one the store recorded
                    return None
                trained = self.runner.load_trained(cell)
            spec = self.runner.model_spec(cell)
            return compute_maps(spec, trained, self.runner.registry.get("explainer", explainer),
                                self.runner.data(cell.dataset), indices, self.runner.runtime_for(spec))

        return self._cached_maps(self.maps_path(h, explainer, len(indices)), len(indices), compute)

    def random_maps_for(self, cell: Cell, explainer: str) -> np.ndarray:
        """Maps of the same architecture with random weights (Adebayo et al., 2018), on the sanity subset."""
        spec = self.runner.model_spec(cell)
        data = self.runner.data(cell.dataset)
        indices = self.sample(cell)[: self.runner.options.sanity_images]
        key = "random-" + config_hash({"model": spec.name, "dataset": self.runner.dataset_config(cell.dataset),
                                       "seed": cell.seed, "schema": SCHEMA_VERSION,
                                       "precision": self.runner.runtime_for(spec).precision})

        def compute() -> np.ndarray:
            if key not in self._random_models:  # one build per architecture, whatever the explainer
                torch.manual_seed(cell.seed)
                self._random_models = {key: built(spec, spec.build(data.num_classes, data.img_size))}
            return compute_maps(spec, self._random_models[key], self.runner.registry.get("explainer", explainer), data,
                                indices, self.runner.runtime_for(spec))

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
        data = self.runner.data(cell.dataset)
        teacher_cell, baseline_cell = teacher_cell_of(cell), baseline_cell_of(cell)
        sample = self.sample(cell)
        rows = panel_rows(data, sample, self.runner.options.panel_per_class)
        indices = [sample[r] for r in rows]
        n_test = len(data.splits["test"])

        def column(name: str, of: Cell, maps: np.ndarray) -> PanelColumn:
            """The cell's maps on the panel rows, with the predictions its store row recorded when it was scored."""
            record = self.runner.store.get(self.runner.hash(of))
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
        board_dir = self.runner.options.leaderboard_dir
        path = path_inside(board_dir, "panels", cell.dataset, explainer,
                           f"{cell.teacher}__{cell.student}__{cell.method}{suffix}__{self.runner.hash(cell)}"
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
        data = self.runner.data(cell.dataset)
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
                                                                self.runner.runtime_for(self.runner.model_spec(cell)), seed=seed),
                                              seed)
        n_sanity = min(self.runner.options.sanity_images, len(indices))
        metrics["n_sanity"] = n_sanity
        if n_sanity:
            metrics["sanity"] = agreement.agreement(maps[:n_sanity], self.random_maps_for(cell, explainer), seed)
        artifacts: dict[str, str] = {}
        if cell.distilled:
            teacher_maps = self.maps_for(teacher_cell_of(cell), explainer)
            baseline_maps = self.maps_for(baseline_cell_of(cell), explainer)
            if teacher_maps is not None:
                metrics["agreement"] = agreement.agreement(teacher_maps, maps, seed)
                if baseline_maps is not None:
                    metrics["label_only_agreement"] = agreement.agreement(teacher_maps, baseline_maps, seed)
            artifacts["panel"] = str(self.panel_for(cell, explainer, maps))
        return metrics, artifacts

    def missing(self, cell: Cell) -> list[str]:
        """The requested explainers without a finished explanation of this cell in the store."""
        h, n = self.runner.hash(cell), len(self.sample(cell))
        missing = []
        for explainer in self.explainer_names():
            rec = self.runner.store.explanation(h, explainer, n, cell.seed)
            if rec is None or rec.status != "done":
                missing.append(explainer)
        return missing

    def explain(self, cell: Cell, model: nn.Module | None = None) -> tuple[int, int]:
        """Run every requested explainer not yet stored for this cell: (explained, failed)."""
        h = self.runner.hash(cell)
        n = len(self.sample(cell))
        explained = failed = 0
        for explainer in self.missing(cell):
            started = time.perf_counter()
            self.runner.reporter.phase(f"explaining {cell.label()} with {explainer} ({n} images)")
            try:
                if model is None:
                    model = self.runner.load_trained(cell)
                metrics, artifacts = self.explanation_metrics(cell, explainer, model)
            except (KeyboardInterrupt, StoreError):
                raise
            except Exception as exc:
                self.runner.store.save_explanation(h, explainer, n, cell.seed, "failed", error=one_line(exc),
                                                   traceback=traceback.format_exc())
                self.runner.reporter.cell_finished(cell, "failed", f"{explainer}: {one_line(exc)}")
                failed += 1
                continue
            metrics["seconds"] = time.perf_counter() - started
            self.runner.store.save_explanation(h, explainer, n, cell.seed, "done", metrics, artifacts)
            explained += 1
        return explained, failed


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
