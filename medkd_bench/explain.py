"""Saliency maps on a fixed, seeded sample of test images, and picture panels.

The sample depends only on the dataset and the seed, so the teacher's maps
and every student's maps are computed on the same images and can be compared
picture by picture (and, in the agreement metrics, number by number).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import PreparedData
from .errors import MedkdError
from .runtime import Runtime
from .specs import ExplainerSpec, ModelSpec, ReshapeTransform


def explanation_sample(data: PreparedData, n_images: int, seed: int) -> list[int]:
    """``n_images`` test indices, balanced over classes, in a seeded order.

    Classes take turns (class 0, 1, 2, 0, 1, ...), so any prefix of the sample
    is itself balanced: the first ``num_classes`` images are the panel rows,
    the first few the sanity-check subset.
    """
    labels = data.splits["test"].labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    queues = [[i for i in order if int(labels[i]) == c] for c in range(data.num_classes)]
    chosen: list[int] = []
    while len(chosen) < min(n_images, len(labels)) and any(queues):
        for q in queues:
            if q and len(chosen) < n_images:
                chosen.append(q.pop(0))
    return chosen


def panel_rows(data: PreparedData, sample: Sequence[int], per_class: int) -> list[int]:
    """Positions in ``sample`` of the first ``per_class`` images of each class, grouped by class."""
    labels = data.splits["test"].labels
    rows: list[int] = []
    for c in range(data.num_classes):
        rows += [pos for pos, i in enumerate(sample) if int(labels[i]) == c][:per_class]
    return rows


def road_faithfulness(
    model: nn.Module, data: PreparedData, indices: Sequence[int], maps: np.ndarray, runtime: Runtime,
    percentiles: Sequence[int] = (20, 40, 60, 80), seed: int = 0, batch_size: int = 64,
) -> np.ndarray:
    """Per-image ROAD score (Rong et al., ICML 2022), as grad-cam's ``ROADCombined`` computes it.

    Pixels are removed most-relevant-first and least-relevant-first (with
    grad-cam's noisy linear imputation, so removal leaves no tell-tale shape);
    the score is half the difference in class probability, LeRF minus MoRF,
    averaged over ``percentiles``: higher means the map ranks pixels by what
    the model really uses.

    Same perturbations, same noise (imputed in grad-cam's order) and same
    formula as ``ROADCombined``, whose per-threshold baseline pass cancels in
    LeRF minus MoRF; but all perturbed images go through the model in a few
    large batches instead of two small passes per threshold (4x less model time
    for VGG19 on six images). The model runs in the precision it was trained
    and scored in (``runtime``), as for its maps.
    """
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    model = runtime.prepare_model(model).eval()
    test = data.splits["test"]
    images = data.normalise(test.images[list(indices)], runtime.device).cpu()
    labels = torch.tensor([int(test.labels[i]) for i in indices])
    torch.manual_seed(seed)  # the imputer's noise
    perturbed = []
    for remove in (RemoveLeastRelevantFirst, RemoveMostRelevantFirst):  # grad-cam's order: LeRF first
        for p in percentiles:
            perturb = remove(p, NoisyLinearImputer())
            perturbed += [perturb(images[i], torch.from_numpy(maps[i])) for i in range(len(indices))]
    batch = torch.stack(perturbed)
    probs = []
    with torch.inference_mode(), runtime.autocast():
        for chunk in batch.split(batch_size):
            logits = model(runtime.to_model(chunk.to(runtime.device))).float()
            probs.append(torch.softmax(logits, dim=-1).cpu())
    p_class = torch.cat(probs).view(2, len(percentiles), len(indices), -1)
    p_class = p_class.gather(-1, labels.view(1, 1, -1, 1).expand(2, len(percentiles), -1, 1)).squeeze(-1)
    lerf, morf = p_class.mean(dim=1)
    return ((lerf - morf) / 2).double().numpy()


def compute_maps(
    spec: ModelSpec,
    model: nn.Module,
    explainer: ExplainerSpec,
    data: PreparedData,
    indices: Sequence[int],
    runtime: Runtime,
    images_per_call: int = 2,
) -> np.ndarray:
    """``(len(indices), H, W)`` float32 maps in [0, 1] for the true class of each image.

    Explaining the ground-truth class (not each model's own prediction) keeps
    teacher and student maps answerable to the same question. The model runs
    in the precision it was trained and scored in (``runtime``); hooked
    activations and gradients are cast to float32 before grad-cam sees them.
    """
    model = runtime.prepare_model(model).eval()
    test = data.splits["test"]
    explain = explainer.build(model, spec.target_layers(model), _float32(spec.reshape_transform))
    chunks = []
    # A few images per call: Score-CAM holds images x channels masked copies of its input at once
    # (6 images x 512 channels at 224 px would be 1.8 GB).
    for start in range(0, len(indices), images_per_call):
        part = list(indices[start:start + images_per_call])
        images = runtime.to_model(data.normalise(test.images[part], runtime.device))
        with runtime.autocast():
            chunks.append(np.asarray(explain(images, [int(test.labels[i]) for i in part]), dtype=np.float32))
    maps = np.concatenate(chunks) if chunks else np.zeros((0, data.img_size, data.img_size), np.float32)
    return np.nan_to_num(maps, nan=0.0)


def _float32(transform: ReshapeTransform | None) -> ReshapeTransform:
    """grad-cam turns hooked tensors into numpy, which has no bfloat16."""
    if transform is None:
        return lambda t: t.float()
    return lambda t: transform(t).float()


def render_panel(
    path: Path,
    data: PreparedData,
    indices: Sequence[int],
    columns: Sequence[tuple[str, np.ndarray]],  # one map per index, in the same order
    title: str,
    mask_name: str | None = None,
) -> Path:
    """A grid: one row per image; the input (with mask outline), then one map per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = data.splits["test"]
    n_rows, n_cols = len(indices), 1 + len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.7 * n_cols, 1.95 * n_rows + 0.45), squeeze=False)
    for r, i in enumerate(indices):
        colour = test.images.shape[1] == 3
        # Maps are overlaid on a grey version, so the heat colours stay readable on stained tissue.
        image = test.images[i].float().mean(0).numpy() / 255.0 if colour else test.images[i, 0].numpy() / 255.0
        mask = test.masks[mask_name][i].numpy() if mask_name and mask_name in test.masks else None
        cls = data.spec.classes[int(test.labels[i])]
        ax = axes[r, 0]
        if colour:
            ax.imshow(test.images[i].permute(1, 2, 0).numpy())
        else:
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=["lime"], linewidths=1.0)
        ax.set_title(f"{cls}" + (f"\n({mask_name} outlined)" if mask is not None else ""), fontsize=7)
        for c, (name, maps) in enumerate(columns, start=1):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.imshow(maps[r], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if mask is not None and mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=["white"], linewidths=0.7)
            if r == 0:
                ax.set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path


def _load_finished(registry: Any, record: Any, data: PreparedData, device: torch.device,
                   work_dir: Path) -> nn.Module:
    from safetensors.torch import load_file

    spec = registry.get(record.config["model"]["role"], record.config["model"]["name"])
    path = work_dir / "checkpoints" / f"{record.hash}.safetensors"
    if not path.is_file():
        raise MedkdError(f"checkpoint {path} of {record.method} cell {record.hash} is missing; rerun the matrix")
    model = spec.build(data.num_classes, data.img_size)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def panel_from_store(
    registry: Any, store: Any, work_dir: Path, dataset: str, teacher: str, student: str, explainer: str,
    images_per_class: int, out: Path, runtime: Runtime, data_root: Path | None = None,
    skip_bad: bool = False,
) -> Path:
    """Render a teacher / label-only / KD panel from finished cells, without training.

    The cells are found by name (the newest finished ones), and the data is
    rebuilt from the KD cell's own recorded config, so the panel shows exactly
    the models and images the leaderboard describes.
    """
    from .data import prepare

    done = [r for r in store.cells(dataset=dataset, status="done")]
    done.sort(key=lambda r: r.finished_at or 0.0)

    def newest(method: str, t: str, s: str, seed: int | None = None) -> Any:
        for r in reversed(done):
            if (r.method, r.teacher, r.student) == (method, t, s) and seed in (None, r.seed):
                return r
        return None

    kd = newest("kd", teacher, student)
    if kd is None:
        raise MedkdError(f"no finished KD cell {teacher} -> {student} on {dataset}: run the matrix first")
    # The KD student's own teacher and baseline: the same training seed (``--seeds``).
    cells = [("teacher " + teacher, newest("teacher", teacher, "", kd.seed)),
             (f"{student} labels only", newest("label-only", "", student, kd.seed)),
             (f"{student} KD", kd)]
    spec = registry.get("dataset", dataset)
    cfg = kd.config["dataset"]
    data = prepare(spec, cfg["img_size"], data_root, {k: v for k, v in cfg["options"].items() if k in spec.options},
                   cache_dir=work_dir / "cache", skip_bad=skip_bad)
    explainer_spec = registry.get("explainer", explainer)
    sample = explanation_sample(data, images_per_class * data.num_classes, seed=kd.seed)
    rows = panel_rows(data, sample, images_per_class)
    indices = [sample[r] for r in rows]
    columns = []
    for title, record in cells:
        if record is None:
            continue
        model = _load_finished(registry, record, data, runtime.device, work_dir)
        model_spec = registry.get(record.config["model"]["role"], record.config["model"]["name"])
        columns.append((title, compute_maps(model_spec, model, explainer_spec, data, indices,
                                            runtime.for_model(model_spec))))
    return render_panel(out, data, indices, columns, title=f"{explainer}: {dataset}, {teacher} -> {student}",
                        mask_name=data.spec.localisation_mask)
