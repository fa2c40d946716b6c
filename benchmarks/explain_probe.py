"""Do the trained models use synthetic-cxr's lesions, and can a saliency map at 64 px show it?

Issue 26 found every model's Score-CAM map at chance against the lesion mask. That has two
readings: the models decide from something other than the lesions, or they use the lesions and
a 4x4 map (stride 16 at 64 px) cannot point at a lesion covering about 3% of the image. This
probe tells them apart on finished cells of a run store, without training anything:

* **Counterfactual.** Every test image is generated again with its lesions removed and nothing
  else changed (the generator draws the same random numbers; only the lesions' opacity is set
  to zero). A model that uses the lesions calls most lesion-free COVID-19 and pneumonia images
  ``Normal``; the share it still calls by their class is what it decides from elsewhere.
* **Resolution.** Saliency maps against two masks: the generator's binary lesion mask, and the
  lesions' own footprint (where removing them changes the image, the exact evidence), from
  the model's CAM layer (stride 16) and from its last stride-8 layer.

    python benchmarks/explain_probe.py /work/regen/.medkd --dataset synthetic-cxr --seed 0

It reads checkpoints only after checking the SHA-256 the store recorded, writes nothing, and
prints one JSON line per model and layer.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@contextmanager
def lesions_removed():
    """synthetic-cxr's generator with every lesion's opacity zeroed after it was drawn (same random stream)."""
    from medkd_bench_plugins.datasets import synthetic_cxr

    original = synthetic_cxr._lesions
    synthetic_cxr._lesions = lambda *args, **kwargs: original(*args, **kwargs) * 0.0
    try:
        yield
    finally:
        synthetic_cxr._lesions = original


def stride8_layer(model: nn.Module, img_size: int) -> tuple[str, nn.Module]:
    """The last module (in forward order) whose output is a map at 1/8 of the input size."""
    found: list[tuple[str, nn.Module]] = []
    hooks = []
    side = img_size // 8
    for name, module in model.named_modules():
        def hook(mod, _inp, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and (
                    out.shape[-2:] == (side, side) or out.shape[1:3] == (side, side)):
                found.append((name, mod))
        if name:  # a block's hook fires after its children's: the last stride-8 output is the outermost block's
            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, img_size, img_size))
    for h in hooks:
        h.remove()
    if not found:
        raise SystemExit(f"no stride-8 block in {type(model).__name__}")
    return found[-1]


def main() -> None:
    from safetensors.torch import load_file

    from medkd_bench.data.prepare import prepare
    from medkd_bench.explain.agreement import (
        energy_pointing_game,
        mask_area_share,
        pointing_game,
        summarise,
    )
    from medkd_bench.explain.maps import float32_maps
    from medkd_bench.registry import load_registry
    from medkd_bench.run.artifacts import checkpoint_problem
    from medkd_bench.run.store import Store

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--dataset", default="synthetic-cxr")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=48, help="lesion images explained per model")
    parser.add_argument("--explainers", default="grad-cam,score-cam")
    args = parser.parse_args()
    torch.set_num_threads(1)

    registry = load_registry()
    store = Store(args.work_dir / "runs.sqlite", readonly=True)
    records = [r for r in store.cells(dataset=args.dataset, status="done")
               if r.seed == args.seed or r.method == "teacher"]
    spec = registry.get("dataset", args.dataset)
    cfg = records[0].config["dataset"]
    options = {k: v for k, v in cfg["options"].items() if k in spec.options}
    data = prepare(spec, cfg["img_size"], None, options)
    with lesions_removed():
        clean = prepare(spec, cfg["img_size"], None, options)
    test, test_clean = data.splits["test"], clean.splits["test"]
    assert torch.equal(test.labels, test_clean.labels)
    normal = data.spec.classes.index("Normal")
    lesion_classes = (test.labels != normal).nonzero().flatten()
    footprint = ((test.images.float() - test_clean.images.float()).abs()[:, 0] > 8).numpy()
    lesion_mask = test.masks["lesion"].numpy()
    explain_at = lesion_classes[torch.randperm(len(lesion_classes), generator=torch.Generator().manual_seed(0))
                                [: args.images]].tolist()

    for record in sorted(records, key=lambda r: (r.method != "teacher", r.method, r.teacher)):
        model_cfg = record.config["model"]
        model_spec = registry.get(model_cfg["role"], model_cfg["name"])
        path = args.work_dir / "checkpoints" / f"{record.hash}.safetensors"
        problem = checkpoint_problem(path, record.artifacts)
        if problem is not None:
            raise SystemExit(f"checkpoint {path} is {problem}")
        model = model_spec.build(data.num_classes, data.img_size)
        model.load_state_dict(load_file(str(path)))
        model.eval()

        def predict(split: Any, model: nn.Module = model) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([model(data.normalise(split.images[i:i + 100])).argmax(1)
                                  for i in range(0, len(split.labels), 100)])

        with_lesions, without = predict(test)[lesion_classes], predict(test_clean)[lesion_classes]
        truth = test.labels[lesion_classes]
        row: dict[str, Any] = {
            "cell": f"{record.method} {record.teacher or record.student}",
            "accuracy_lesion_classes": round(float((with_lesions == truth).float().mean()), 3),
            "lesions_removed_still_own_class": round(float((without == truth).float().mean()), 3),
            "lesions_removed_called_normal": round(float((without == normal).float().mean()), 3),
        }
        print(json.dumps(row), flush=True)
        layers = {"cam_layer": (model_spec.target_layers(model), model_spec.reshape_transform)}
        name, module = stride8_layer(model, data.img_size)
        layers[f"stride8:{name}"] = ([module], model_spec.reshape_transform)
        for explainer_name in args.explainers.split(","):
            explainer = registry.get("explainer", explainer_name)
            for layer_name, (targets, transform) in layers.items():
                explain = explainer.build(model, targets, float32_maps(transform))
                maps = np.concatenate([np.asarray(explain(data.normalise(test.images[explain_at[i:i + 2]]),
                                                          [int(test.labels[j]) for j in explain_at[i:i + 2]]))
                                       for i in range(0, len(explain_at), 2)])
                out = {"cell": row["cell"], "explainer": explainer_name, "layer": layer_name,
                       "map_side": int(maps.shape[-1])}
                for mask_name, masks in (("lesion_mask", lesion_mask[explain_at]), ("footprint", footprint[explain_at])):
                    epg, chance = summarise(energy_pointing_game(maps, masks)), summarise(mask_area_share(masks))
                    out[mask_name] = {"energy_pointing_game": [round(epg["mean"], 3)] + [round(c, 3) for c in epg["ci"]],
                                      "chance": round(chance["mean"], 3),
                                      "pointing_game": round(summarise(pointing_game(maps, masks))["mean"], 3)}
                print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
