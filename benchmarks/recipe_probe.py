"""Would another training recipe suit one model better? Train one cell's model with it, on validation only.

A model's default recipe (its spec's :class:`~medkd_bench.specs.TrainSettings`) is chosen by comparing
recipes on validation accuracy; the test split must not take part. This trains exactly what
``medkd-bench run`` would train for one cell (same settings path, data, seed and runtime; a teacher on
its dataset's teacher split, a distilled student from the teacher checkpoint in ``--work-dir``'s store),
with ``--train`` overriding fields of the settings, and prints the validation curve as it goes and one
``RESULT`` JSON line at the end. It calls only :func:`~medkd_bench.train.loop.fit`, which scores
validation and nothing else: no test image is read, nothing is written to a store. Without ``--train``
it reproduces the run's own cell (same ``--amp``, one thread), a check that the probe is the run's recipe.

    python benchmarks/recipe_probe.py synthetic-cxr autoformer-v2-t --train '{"weight_decay": 0.5}'
    python benchmarks/recipe_probe.py synthetic-cxr ofa-595 --train '{"weight_decay": 0.5}' --seed 1
    python benchmarks/recipe_probe.py synthetic-cxr ofa-595 --method kd --teacher visformer-s --work-dir .medkd

(testbed_probe.py, by contrast, scores the test split once after training: it judges a dataset variant,
not a recipe.) Recipes compared with it: benchmarks/RESULTS.md, sessions 18 and 19.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def probe(dataset: str, model: str, method: str | None = None, teacher: str = "", seed: int = 0,
          teacher_seed: int = 0, train: dict[str, Any] | None = None, dataset_options: dict[str, Any] | None = None,
          img_size: int | None = None, epochs: int | None = None, work_dir: Path = Path(".medkd"),
          amp: str = "fp32", threads: int = 1,
          say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one cell's model with ``train`` over its recipe; its validation curve and best epoch, never test.

    ``img_size``, ``epochs`` and ``amp`` are run's ``--img-size``, ``--epochs`` and ``--amp``; ``threads`` the
    cell's torch threads (its stored ``machine`` says; the reference runs': 1), which change float rounding. Without
    ``train`` the result names the config hash of the run's cell it reproduces (``run_cell_hash``).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _probe(dataset, model, method, teacher, seed, teacher_seed, train or {}, dataset_options or {},
                      img_size, epochs, work_dir, amp, say)
    finally:
        torch.set_num_threads(previous)


def _probe(dataset: str, model: str, method: str | None, teacher: str, seed: int, teacher_seed: int,
           train: dict[str, Any], dataset_options: dict[str, Any], img_size: int | None, epochs: int | None,
           work_dir: Path, amp: str, say: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from medkd_bench.cli.options import parse_dataset_options
    from medkd_bench.registry import load_registry
    from medkd_bench.run.cells import Cell, teacher_cell_of
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.config_hash import config_hash
    from medkd_bench.run.run_options import RunOptions
    from medkd_bench.runtime.device import resolve_runtime
    from medkd_bench.train.loop import fit

    registry = load_registry()
    is_teacher = model in registry.teachers
    method = method or ("teacher" if is_teacher else "label-only")
    cell = (Cell(dataset, "teacher", teacher=model, seed=seed) if is_teacher
            else Cell(dataset, method, teacher=teacher, student=model, seed=seed,
                      teacher_seed=teacher_seed if teacher else None))
    # Typed and checked as run's --dataset-option is (3 becomes the option's 3.0: part of the config hash).
    typed = parse_dataset_options([f"{dataset}.{k}={v}" for k, v in dataset_options.items()], registry)
    options = RunOptions(work_dir=work_dir, img_size=img_size, epochs=epochs, dataset_options=typed)
    computer = CellComputer(registry, options, resolve_runtime("cpu", amp))
    spec = computer.model_spec(cell)
    settings = computer.cell_settings(cell).replace(**train)
    say(f"{cell.label()}: {settings}")
    data = computer.data(dataset).for_teacher() if is_teacher else computer.data(dataset)
    if cell.distilled:
        computer.soft_targets(teacher_cell_of(cell))
    torch.manual_seed(seed)
    net = computer.build_model(spec, data)
    distill = computer.distillation(cell, net, spec, settings, data) if cell.distilled else None
    started = time.perf_counter()

    def on_epoch(epoch: int, epochs: int, row: dict[str, float]) -> None:
        say(f"epoch {epoch}: loss {row['loss']:.3f}, val {row['val_accuracy']:.3f}, "
            f"{time.perf_counter() - started:.0f} s")

    result = fit(net, data, settings, computer.runtime_for(spec), seed=seed, distill=distill, on_epoch=on_epoch)
    return {"cell": cell.label(), "train": train,
            "run_cell_hash": None if train else config_hash(computer.config(cell)),
            "best_val_accuracy": round(result.best_val_accuracy, 4),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped": result.stopped,
            "val_curve": [round(row["val_accuracy"], 4) for row in result.history],
            "minutes": round((time.perf_counter() - started) / 60, 2)}


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("model", help="a teacher or a student")
    parser.add_argument("--method", help="a student's method (default label-only); a teacher's is 'teacher'")
    parser.add_argument("--teacher", default="", help="the teacher a distilled student learns from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-seed", type=int, default=0,
                        help="the teacher cell's seed (run's default: one teacher, the run's first seed)")
    parser.add_argument("--train", type=json.loads, default={}, help='TrainSettings fields, e.g. \'{"lr": 2e-4}\'')
    parser.add_argument("--dataset-option", type=_option, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--img-size", type=int)
    parser.add_argument("--epochs", type=int, help="as run's --epochs: exactly N one-pass epochs")
    parser.add_argument("--work-dir", type=Path, default=Path(".medkd"),
                        help="data cache, and the store a distilled student's teacher checkpoint comes from")
    parser.add_argument("--amp", default="fp32", help="as run's --amp (the reference runs: fp32)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the reference runs: 1 per cell)")
    args = parser.parse_args(argv)
    from medkd_bench.specs import TrainSettings

    unknown = sorted(set(args.train) - set(TrainSettings.__dataclass_fields__))
    if unknown:
        parser.error(f"--train: {', '.join(unknown)}: not a TrainSettings field")
    from medkd_bench.errors import MedkdError

    try:
        result = probe(args.dataset, args.model, args.method, args.teacher, args.seed, args.teacher_seed, args.train,
                       dict(args.dataset_option), args.img_size, args.epochs, args.work_dir, args.amp,
                       args.threads, say=functools.partial(print, flush=True))
    except MedkdError as exc:
        parser.exit(2, f"recipe_probe: {exc}\n")
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
