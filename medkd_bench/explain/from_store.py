"""``medkd-bench explain``: a teacher / label-only / KD panel rebuilt from finished cells, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.errors import MedkdError
from medkd_bench.explain.maps import compute_maps, explanation_sample
from medkd_bench.explain.panels import PanelColumn, panel_rows, render_panel, stored_predictions
from medkd_bench.run.artifacts import checkpoint_problem
from medkd_bench.runtime.device import Runtime


def _checked_checkpoint(record: Any, work_dir: Path) -> Path:
    """A finished cell's checkpoint, if it has the SHA-256 the store recorded (as ``run`` checks it); else one line."""
    path = work_dir / "checkpoints" / f"{record.hash}.safetensors"
    problem = checkpoint_problem(path, record.artifacts)
    if problem is not None:
        raise MedkdError(f"checkpoint {path} of {record.method} cell {record.hash} is {problem}; "
                         "rerun `medkd-bench run` to train the cell again")
    return path


def _load_finished(registry: Any, record: Any, data: PreparedData, device: torch.device,
                   work_dir: Path) -> nn.Module:
    from safetensors.torch import load_file

    spec = registry.get(record.config["model"]["role"], record.config["model"]["name"])
    path = _checked_checkpoint(record, work_dir)
    model = spec.build(data.num_classes, data.img_size)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def panel_from_store(
    registry: Any, store: Any, work_dir: Path, dataset: str, teacher: str, student: str, explainer: str,
    images_per_class: int, out: Path, runtime: Runtime, data_root: Path | None = None,
    skip_bad: bool = False, method: str = "kd",
) -> Path:
    """Render a teacher / label-only / distilled panel from finished cells, without training.

    The cells are found by name (the newest finished ones), and the data is
    rebuilt from the distilled cell's own recorded config, so the panel shows exactly
    the models and images the leaderboard describes.
    """
    from medkd_bench.data.prepare import prepare

    done = [r for r in store.cells(dataset=dataset, status="done")]
    done.sort(key=lambda r: r.finished_at or 0.0)

    def newest(method: str, t: str, s: str, seed: int | None = None) -> Any:
        for r in reversed(done):
            if (r.method, r.teacher, r.student) == (method, t, s) and seed in (None, r.seed):
                return r
        return None

    kd = newest(method, teacher, student)
    if kd is None:
        raise MedkdError(f"no finished {method} cell {teacher} -> {student} on {dataset}: run the matrix first")
    # The KD student's own teacher (found by the config hash it distilled from: one fixed teacher may
    # serve every seed) and its baseline, trained with the same seed.
    teacher_rec = next((r for r in reversed(done) if r.hash == kd.config.get("teacher")), None)
    cells = [("teacher " + teacher, teacher_rec or newest("teacher", teacher, "", kd.seed)),
             (f"{student} labels only", newest("label-only", "", student, kd.seed)),
             (f"{student} {method}", kd)]
    spec = registry.get("dataset", dataset)
    cfg = kd.config["dataset"]
    data = prepare(spec, cfg["img_size"], data_root, {k: v for k, v in cfg["options"].items() if k in spec.options},
                   cache_dir=work_dir / "cache", skip_bad=skip_bad)
    explainer_spec = registry.get("explainer", explainer)
    sample = explanation_sample(data, images_per_class * data.num_classes, seed=kd.seed)
    rows = panel_rows(data, sample, images_per_class)
    indices = [sample[r] for r in rows]
    cells = [(title, record) for title, record in cells if record is not None]
    for _, record in cells:  # every checkpoint checked before any map is computed: a damaged one refuses the panel
        _checked_checkpoint(record, work_dir)
    columns = []
    for title, record in cells:
        model = _load_finished(registry, record, data, runtime.device, work_dir)
        model_spec = registry.get(record.config["model"]["role"], record.config["model"]["name"])
        maps = compute_maps(model_spec, model, explainer_spec, data, indices, runtime.for_model(model_spec))
        columns.append(PanelColumn(title, maps, stored_predictions(record.metrics, indices,
                                                                    len(data.splits["test"]))))
    return render_panel(out, data, indices, columns, title=f"{explainer}: {dataset}, {teacher} -> {student} ({method})",
                        mask_name=data.spec.localisation_mask)
