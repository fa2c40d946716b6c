"""Is an embedded dataset a fair KD testbed? Train a teacher and the label-only student to convergence and compare.

Issue 26 asks of each embedded dataset that the converged best teacher beat the
converged label-only student with a CI excluding zero, with neither at the
ceiling. This probe trains each named model on one dataset variant with its
spec's own settings (early stopping on validation accuracy, as ``run`` does),
in one process per model side by side, and prints per model the epochs run, why
it stopped, the test accuracy, and each teacher's paired margin over the first
student (bootstrap 95% CI over the test images, as the leaderboard computes it).
It writes no store and reads the test split only after training, so it tunes
nothing on it; use it to choose dataset options, then confirm with ``run``.

    python benchmarks/testbed_probe.py synthetic-histo --models visformer-s,ofa-595 \\
        --options '{"n_val": 200, "n_test": 500}'
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any


def train_one(model_name: str, dataset: str, options: dict[str, Any], seed: int,
              train: dict[str, Any] | None = None, log: str | None = None) -> dict[str, Any]:
    """Train ``model_name`` to its stopping rule on ``dataset`` with ``options``; its test predictions and history.

    ``train`` overrides fields of the spec's :class:`~medkd_bench.specs.TrainSettings` (e.g. ``{"lr": 2e-4}``),
    to compare recipes by their validation accuracy; its ``"data"`` entry overrides dataset options for this
    model alone (e.g. ``{"data": {"n_train": 1080}}``: a teacher trained on more images than the student,
    measured on the same validation and test images, which are separate splits). ``log``: a file that
    gets one JSON line per epoch as it ends, so a long run killed before its end still leaves its validation curve.
    """
    import torch

    from medkd_bench.data.prepare import prepare
    from medkd_bench.registry import load_registry
    from medkd_bench.runtime.device import resolve_runtime
    from medkd_bench.train.loop import fit
    from medkd_bench.train.predict import split_outputs

    torch.set_num_threads(1)
    recipe = dict(train or {})
    options = {**options, **recipe.pop("data", {})}
    registry = load_registry()
    spec = registry.teachers.get(model_name) or registry.get("student", model_name)
    data = prepare(registry.get("dataset", dataset), None, None, options)
    if model_name in registry.teachers:  # its dataset's teacher split, as `run` trains teachers
        data = data.for_teacher()
    runtime = resolve_runtime("cpu", "auto").for_model(spec)
    torch.manual_seed(seed)
    model = spec.build(data.num_classes, data.img_size)
    started = time.perf_counter()
    def on_epoch(epoch: int, epochs: int, row: dict[str, float]) -> None:
        if log:
            with open(log, "a") as out:
                out.write(json.dumps({"model": model_name, "train": train or {}, "seed": seed, "epoch": epoch,
                                      "val_accuracy": round(row["val_accuracy"], 4)}) + "\n")

    result = fit(model, data, spec.train.replace(**recipe), runtime, seed=seed, on_epoch=on_epoch)
    preds, _ = split_outputs(model, data, "test", runtime)
    return {"model": model_name, "train": train or {}, "best_val": round(result.best_val_accuracy, 4),
            "role": "teacher" if model_name in registry.teachers else "student",
            "epochs_run": result.epochs_run, "stopped": result.stopped, "best_epoch": result.best_epoch,
            "seconds": round(time.perf_counter() - started, 1), "preds": list(preds),
            "labels": data.splits["test"].labels.tolist(),
            "val": [round(h["val_accuracy"], 3) for h in result.history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--models", default="visformer-s,ofa-595", help="comma-separated; the first student is the "
                        "label-only baseline every teacher is compared with")
    parser.add_argument("--options", default="{}", help="dataset options as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", default="{}", help='training overrides per model as JSON, e.g. '
                        '\'{"visformer-s": {"lr": 0.00025}}\'; a name may repeat in --models as NAME@K to try '
                        'the K-th override of a list')
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--log", help="append one JSON line per model and epoch to this file as training goes")
    args = parser.parse_args()
    from medkd_bench.evaluate import stats

    options = json.loads(args.options)
    overrides = json.loads(args.train)
    jobs = []
    for entry in (n for n in args.models.split(",") if n):
        name, _, k = entry.partition("@")
        given = overrides.get(name, {})
        jobs.append((name, args.dataset, options, args.seed, given[int(k)] if k else given, args.log))
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.starmap(train_one, jobs)
    student = next((r for r in results if r["role"] == "student"), None)
    for r in results:
        acc = sum(p == y for p, y in zip(r["preds"], r["labels"], strict=True)) / len(r["labels"])
        line = {k: r[k] for k in ("model", "train", "epochs_run", "stopped", "best_epoch", "best_val", "seconds")}
        line.update(dataset=args.dataset, options=options, seed=args.seed, test_accuracy=round(acc, 4))
        if r["role"] == "teacher" and student is not None:
            margin = stats.paired_difference(r["labels"], [r["preds"]], [student["preds"]], 0, 1000)
            line["margin_pp"] = [round(100 * margin["mean"], 1), *(round(100 * c, 1) for c in margin["ci"])]
        line["val"] = r["val"]
        print(json.dumps(line))


if __name__ == "__main__":
    main()
