"""The training loop shared by teachers, label-only students and KD students.

Robustness measures for networks trained from random weights on small data
(each one answers a failure we measured): AdamW with a linear warm-up and a
cosine decay; gradient-norm clipping; batch-norm statistics recomputed from
training batches before every validation; and the weights of the best
validation epoch are kept, so a late collapse cannot reach the test set.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import PreparedData
from medkd_bench.runtime.device import Runtime
from medkd_bench.runtime.interrupts import raise_if_interrupted
from medkd_bench.specs import TrainSettings
from medkd_bench.train.batchnorm import has_batch_norm, recalibrate_batch_norm
from medkd_bench.train.finite import NonFiniteError, require_finite_weights
from medkd_bench.train.losses import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, kd_loss
from medkd_bench.train.optim import clipped_step, make_adamw, param_groups
from medkd_bench.train.predict import evaluate_accuracy, teacher_soft_targets
from medkd_bench.train.schedule import (
    PlateauStop,
    passes_per_epoch,
    steps_per_epoch_of,
    steps_per_pass,
    warmup_cosine,
)
from medkd_bench.train.shapes import require_logits
from medkd_bench.train.snapshots import Snapshots, cpu_copy, restore_rng_states, rng_states
from medkd_bench.train.warmup import warm_up

if TYPE_CHECKING:
    from medkd_bench.distill.method import Distillation


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    train_seconds: float = 0.0
    train_images: int = 0
    #: One-time kernel loading, selection and compilation before timed training (:mod:`.warmup`).
    warmup_seconds: float = 0.0
    #: What scoring should call: the trained model, or its ``torch.compile`` wrapper (as validation did).
    forward: nn.Module | None = field(default=None, repr=False)
    #: Per epoch: (images, seconds) of the training loop alone.
    epoch_times: list[tuple[int, float]] = field(default_factory=list)
    #: ``plateau``, ``epoch-cap`` or ``fixed`` (:data:`~medkd_bench.train.schedule.STOP_REASONS`).
    stopped: str = "fixed"
    #: The epoch of the snapshot training resumed from (:mod:`.snapshots`); 0 when it began at epoch 1.
    resumed_from_epoch: int = 0
    #: Wall seconds that earlier, interrupted runs spent in this training up to that snapshot: a resumed
    #: cell's ``total_s`` adds them, so time estimates and tuning costs see what the cell really cost.
    earlier_seconds: float = 0.0
    #: CPU seconds of this process (all its threads) in the training loop: unlike ``train_seconds`` a pause
    #: (``SIGSTOP``, a suspended VM) does not count, and work on other cores beside it does not slow it down,
    #: so costs compare across runs that shared a machine differently.
    train_cpu_seconds: float = 0.0
    #: As ``earlier_seconds``, in CPU seconds.
    earlier_cpu_seconds: float = 0.0

    #: What a snapshot keeps of the result so far (timings included: a resumed cell's add up).
    SNAPSHOT_FIELDS = ("history", "best_epoch", "best_val_accuracy", "train_seconds", "train_images", "epoch_times",
                       "train_cpu_seconds")

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0


def compiled(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` through ``torch.compile`` in the runtime's mode, or ``model`` itself when compiling is off.

    The wrapper shares the model's parameters and modes; checkpoints, batch-norm
    recalibration and explanations keep using the plain module (hooks and
    state-dict keys as always).
    """
    if runtime.compile_mode == "off":
        return model
    return torch.compile(model, mode=runtime.compile_mode)


def epoch_batches(data: PreparedData, settings: TrainSettings,
                  generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch's batches: :func:`passes_per_epoch` seeded passes over the training split, one after another."""
    for _ in range(passes_per_epoch(len(data.splits["train"]), settings)):
        yield from train_batches(data, settings.batch_size, generator)


EpochCallback = Callable[[int, int, dict[str, float]], None]


class Trainer:
    """One model's optimiser, schedule and loss: the update of one training step.

    :func:`fit` drives it batch by batch; ``benchmarks/run_all.py`` calls
    :meth:`step` interleaved with a bare PyTorch step, so the harness's
    per-step overhead is measured without the VM's drift between epochs.
    """

    def __init__(
        self,
        model: nn.Module,
        data: PreparedData,
        settings: TrainSettings,
        runtime: Runtime,
        distill: Distillation | None = None,
        forward: nn.Module | None = None,
    ) -> None:
        self.model, self.data, self.settings, self.runtime = model, data, settings, runtime
        self.distill = distill
        #: What the training step calls: the model itself, or its ``torch.compile`` wrapper.
        self.forward = forward if forward is not None else model
        self.labels = data.splits["train"].labels
        self.steps = 0
        steps_per_epoch = steps_per_epoch_of(len(self.labels), settings)
        groups = param_groups(model, settings.weight_decay)
        if distill is not None and distill.parameters():  # a method's own modules (FitNets' regressor)
            groups += param_groups(distill.loss_module, settings.weight_decay)
        self.optimizer = make_adamw(groups, settings.lr, runtime.device)
        #: Under early stopping: reads each validation accuracy and shapes the learning rate (warmup-stable-decay).
        self.plateau: PlateauStop | None = None
        if settings.early_stopping:
            self.plateau = PlateauStop(settings.epochs, steps_per_epoch, settings.warmup_epochs, settings.min_lr_ratio,
                                       settings.patience, settings.min_delta, settings.cooldown_fraction,
                                       settings.min_epochs, settings.patience_steps)
            factor = self.plateau.factor
        else:
            factor = warmup_cosine(settings.epochs * steps_per_epoch, int(settings.warmup_epochs * steps_per_epoch),
                                   settings.min_lr_ratio)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = runtime.grad_scaler()

    def loss(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        runtime = self.runtime
        x = runtime.to_model(self.data.normalise(images, runtime.device))
        y = self.labels[idx].to(runtime.device)
        with runtime.autocast():
            if self.distill is not None:
                return self.distill.loss(self.forward, x, y, idx, flipped, images, self.steps)
            logits = require_logits(self.forward(x), len(x), self.data.num_classes, "logits in training")
            return F.cross_entropy(logits.float(), y, label_smoothing=self.settings.label_smoothing)

    def step(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> float:
        """One optimiser update on a batch (the model must be in train mode); returns the batch's mean loss."""
        with self.runtime.numerics():  # TF32 as chosen for the backward pass too, not only the forward
            return self._step(idx, flipped, images)

    def _step(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> float:
        loss = self.loss(idx, flipped, images)
        optimizer, scaler, clip = self.optimizer, self.scaler, self.settings.grad_clip
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if clip:
                nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip, foreach=True)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            clipped_step(optimizer, clip)
        self.schedule.step()
        self.steps += 1
        return float(loss.detach())

    def state(self) -> dict[str, Any]:
        """Everything later steps depend on, for a training snapshot: weights, optimiser, schedule, plateau."""
        return {
            "model": cpu_copy(self.model.state_dict()),
            "method": cpu_copy(self.distill.loss_module.state_dict()) if self.distill is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "steps": self.steps,
            "plateau": dataclasses.asdict(self.plateau) if self.plateau is not None else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state` returned (the trainer was built with the same model and settings)."""
        self.model.load_state_dict(state["model"])
        if self.distill is not None:
            self.distill.loss_module.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.steps = state["steps"]
        if self.plateau is not None:  # in place: the schedule calls this object's factor
            for name, value in state["plateau"].items():
                setattr(self.plateau, name, tuple(value) if name == "cooldown" and value is not None else value)


def fit(
    model: nn.Module,
    data: PreparedData,
    settings: TrainSettings,
    runtime: Runtime,
    seed: int,
    distill: Distillation | None = None,
    on_epoch: EpochCallback | None = None,
    bn_batches: int = 8,
    warm: bool | None = None,
    snapshots: Snapshots | None = None,
) -> TrainResult:
    """Train ``model`` in place on the train split; keep the best validation epoch.

    With ``settings.early_stopping`` training ends once validation accuracy has
    plateaued and the learning rate has cooled down (or at the epoch cap), and
    ``result.stopped`` says which; otherwise it runs exactly ``settings.epochs``.

    ``warm`` (default: on a GPU or under ``--compile``, where first calls are
    slow) pays the one-time costs first and reports them as ``warmup_seconds``,
    outside ``train_seconds``; the trained weights are the same either way.

    With ``snapshots``, training resumes from the cell's snapshot when it has
    one, writes one at an epoch's end every ``snapshots.every_s`` seconds,
    and deletes it once trained (:mod:`.snapshots`).
    """
    fit_started, fit_cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    runtime.prepare_model(model)
    forward = compiled(model, runtime)
    result = TrainResult(forward=forward)
    if warm if warm is not None else (runtime.device.type == "cuda" or runtime.compile_mode != "off"):
        result.warmup_seconds = warm_up(Trainer(model, data, settings, runtime, distill, forward), forward)
    trainer = Trainer(model, data, settings, runtime, distill, forward)
    use_bn = has_batch_norm(model)
    best_state: dict[str, torch.Tensor] | None = None
    saved = snapshots.load() if snapshots is not None else None
    if saved is not None:
        trainer.load_state(saved["trainer"])
        generator.set_state(saved["generator"])
        restore_rng_states(saved["rng"])
        for name in TrainResult.SNAPSHOT_FIELDS:  # (CPU seconds came later: older snapshots lack them)
            setattr(result, name, saved["result"].get(name, getattr(result, name)))
        # None when the best epoch was the snapshot's own: its weights are the model's
        best_state = saved["best_state"] if saved["best_state"] is not None else saved["trainer"]["model"]
        # (snapshots written before wall_s was recorded lack it: their time is simply not counted)
        result.resumed_from_epoch, result.earlier_seconds = len(result.history), saved.get("wall_s", 0.0)
        result.earlier_cpu_seconds = saved.get("cpu_s", 0.0)
    for epoch in range(result.epochs_run + 1, settings.epochs + 1):
        model.train()
        if distill is not None:
            distill.train()
        started, cpu_started = time.perf_counter(), time.process_time()
        loss_sum, seen = 0.0, 0
        for batch, (idx, flipped, images) in enumerate(epoch_batches(data, settings, generator), 1):
            raise_if_interrupted()  # a Ctrl-C whose KeyboardInterrupt was swallowed (a __del__, an import lock)
            loss = trainer.step(idx, flipped, images)
            if not math.isfinite(loss):  # step() already read the loss back: checking it costs nothing
                raise NonFiniteError(f"training loss is {loss} in epoch {epoch}, batch {batch}")
            loss_sum += loss * len(idx)
            seen += len(idx)
        runtime.synchronize()
        elapsed = time.perf_counter() - started
        result.train_seconds += elapsed
        result.train_cpu_seconds += time.process_time() - cpu_started
        result.train_images += seen
        result.epoch_times.append((seen, elapsed))
        if use_bn:
            recalibrate_batch_norm(model, data, runtime, bn_batches, seed + epoch)
        val_acc = evaluate_accuracy(forward, data, "val", runtime)
        row = {"epoch": epoch, "loss": loss_sum / max(1, seen), "val_accuracy": val_acc}
        result.history.append(row)
        if best_state is None or val_acc >= result.best_val_accuracy:
            result.best_epoch, result.best_val_accuracy = epoch, val_acc
            best_state = cpu_copy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, settings.epochs, row)
        if trainer.plateau is not None:
            trainer.plateau.end_epoch(epoch, val_acc)
            if trainer.plateau.done:
                break
        if snapshots is not None and epoch < settings.epochs and snapshots.due():
            snapshots.save({"trainer": trainer.state(), "generator": generator.get_state(), "rng": rng_states(),
                            "wall_s": result.earlier_seconds + time.perf_counter() - fit_started,
                            "cpu_s": result.earlier_cpu_seconds + time.process_time() - fit_cpu_started,
                            "result": {name: getattr(result, name) for name in TrainResult.SNAPSHOT_FIELDS},
                            # the best epoch's weights, unless they are this epoch's (then they are the model's)
                            "best_state": None if result.best_epoch == epoch else best_state})
    if trainer.plateau is not None:
        result.stopped = trainer.plateau.reason or "epoch-cap"
    if best_state is not None:
        model.load_state_dict(best_state)
    require_finite_weights(model, f"weights after training (best epoch {result.best_epoch})")
    model.eval()
    if snapshots is not None:
        snapshots.discard()
    return result


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TEMPERATURE",
    "TrainResult",
    "Trainer",
    "fit",
    "steps_per_epoch_of",
    "steps_per_pass",
    "epoch_batches",
    "kd_loss",
    "passes_per_epoch",
    "teacher_soft_targets",
]
