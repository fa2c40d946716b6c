"""Training: a teacher on labels, a student on labels (the baseline), a student by KD.

All three share one loop (:func:`fit`); only the loss differs. Hinton's
hybrid loss mixes the ground-truth cross-entropy with the KL divergence to the
teacher's temperature-softened outputs.

Robustness measures for networks trained from random weights on small data
(each one answers a failure we measured): AdamW with a linear warm-up and a
cosine decay; gradient-norm clipping; batch-norm statistics recomputed from
training batches before every validation (otherwise a model with unsettled
running statistics scores at chance in eval mode); and the weights of the
best validation epoch are kept, so a late collapse cannot reach the test set.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import PreparedData, train_batches
from .runtime import Runtime
from .specs import TrainSettings

#: Hinton et al. (2015) soften with T > 1; T=4 is the setting of the standard
#: KD baseline in Tian et al., "Contrastive Representation Distillation" (ICLR 2020).
DEFAULT_TEMPERATURE = 4.0
#: Equal weight on ground truth and teacher: the "hybrid supervision" of the source study.
DEFAULT_ALPHA = 0.5


@dataclass(frozen=True)
class KDSettings:
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    alpha: float = DEFAULT_ALPHA,
) -> torch.Tensor:
    """``alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean.

    The ``T^2`` factor keeps the soft-target gradients on the same scale as
    the hard-target ones when T changes (Hinton, Vinyals & Dean, 2015,
    "Distilling the Knowledge in a Neural Network", arXiv:1503.02531).
    """
    t = temperature
    ce = F.cross_entropy(student_logits, targets)
    kl = F.kl_div(
        F.log_softmax(student_logits.float() / t, dim=1),
        F.log_softmax(teacher_logits.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * ce + (1.0 - alpha) * t * t * kl


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    train_seconds: float = 0.0
    train_images: int = 0
    #: Per epoch: (images, seconds) of the training loop alone.
    epoch_times: list[tuple[int, float]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0

    @property
    def warm_images_per_second(self) -> float:
        """Throughput after the first epoch, which also pays one-off kernel selection and allocation."""
        warm = self.epoch_times[1:] or self.epoch_times
        seconds = sum(s for _, s in warm)
        return sum(n for n, _ in warm) / seconds if seconds else 0.0


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw_implementation(device: torch.device) -> str:
    """``"fused"`` where torch has a fused AdamW kernel for the device, else ``"foreach"``.

    The same update rule either way; fused is one kernel over all parameters
    instead of a pass per tensor operation. Measured on a 2-core CPU: the
    optimiser step of VGG19 (140M parameters at 64 px) falls from 460 to 98 ms
    and training runs 1.3x faster; Swin-S3 (batch 16) also 1.3x. Part of the
    config hash, since the two round differently in the last bits.
    """
    return "fused" if device.type in ("cpu", "cuda") else "foreach"


def dense_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if contiguous; a channels-last 4-D tensor as its NHWC view, which is contiguous.

    Elementwise work (an optimiser update, a sum of squares) does not care in
    which order it visits the elements, so a dense channels-last tensor can
    be handed to kernels that would otherwise copy it to contiguous first.
    Anything else is returned as it is.
    """
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1)
    return t


class DenseViewAdamW(torch.optim.AdamW):
    """Fused AdamW that hands channels-last tensors to its kernel as contiguous views.

    The fused CPU kernel copies every non-contiguous tensor to a contiguous
    one and back. For a channels-last model that is each convolution weight,
    its gradient and both moments: measured on VGG19 in bf16 + channels-last
    (one thread), 232 ms per step for its 102M-parameter head weight alone,
    12% of the step. The update is elementwise, so viewing parameter,
    gradient and moments in the same (NHWC) order gives the same result.
    """

    def _init_group(self, group: dict, *lists: Any) -> Any:
        has_complex = super()._init_group(group, *lists)
        # torch 2.x: params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
        if len(lists) == 6:
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, _ = lists
            aligned = [params, grads, exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if max_exp_avg_sqs else [])
            for i in range(len(params)):
                originals = [lst[i] for lst in aligned]
                views = [dense_view(t) for t in originals]
                # Only when all of them are channels-last: the same permutation must apply to each.
                if all(v is not t for v, t in zip(views, originals, strict=True)):
                    for lst, v in zip(aligned, views, strict=True):
                        lst[i] = v
        return has_complex


def make_adamw(params: Any, lr: float, device: torch.device) -> torch.optim.AdamW:
    if adamw_implementation(device) == "fused":
        return DenseViewAdamW(params, lr=lr, fused=True)
    return torch.optim.AdamW(params, lr=lr, foreach=True)


def grad_norm_implementation(device: torch.device) -> str:
    """``"dot-nhwc"`` on CPU (see :func:`total_grad_norm`), else torch's multi-tensor ``"foreach"`` norm.

    Part of the config hash: the two sum in different orders, so they differ in
    the last bits. (``"dot"`` was the CPU norm before channels-last gradients
    were read through their NHWC view.)
    """
    return "dot-nhwc" if device.type == "cpu" else "foreach"


def total_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, as ``clip_grad_norm_`` computes it.

    On CPU as the square root of the summed BLAS dot products ``g . g``: the
    dot kernel streams memory 2.2x faster than torch's norm kernels (VGG19's
    140M gradients on 2 cores: 19 vs 41 ms per step). Channels-last gradients
    are read through their contiguous NHWC view; gradients that are not dense
    float32 (half precision, other layouts) take torch's norm.
    """
    if not grads:
        return torch.zeros(())
    if grad_norm_implementation(grads[0].device) == "foreach":
        return nn.utils.get_total_norm(grads, foreach=True)
    dense = [dense_view(g) for g in grads]
    squares = [torch.dot(g.view(-1), g.view(-1)) if g.dtype == torch.float32 and g.is_contiguous()
               else torch.linalg.vector_norm(g, dtype=torch.float32).square() for g in dense]
    return torch.stack(squares).sum().sqrt()


def clipped_step(optimizer: torch.optim.Optimizer, max_norm: float | None) -> None:
    """``clip_grad_norm_(max_norm)`` then ``optimizer.step()``, in one pass over the gradients where fused.

    A fused optimiser divides every gradient by its ``grad_scale`` inside its
    own kernel (the hook GradScaler uses), so clipping only needs the total
    norm: the separate multiply over all gradients goes. That pass cost VGG19
    (140M parameters) about 5% of its training step on a 2-core CPU.
    """
    if not max_norm:
        optimizer.step()
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = total_grad_norm([p.grad for p in params])
    if optimizer.defaults.get("fused"):
        # clip_grad_norm_ multiplies by min(1, max_norm / (norm + 1e-6)); dividing by its inverse is the same.
        optimizer.grad_scale = torch.clamp((norm + 1e-6) / max_norm, min=1.0).float()  # type: ignore[attr-defined]
    else:
        nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
    optimizer.step()


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.inference_mode()
def predict_logits(
    model: nn.Module, data: PreparedData, images: torch.Tensor, runtime: Runtime, batch_size: int = 128
) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images, in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = runtime.to_model(data.normalise(images[start : start + batch_size], runtime.device))
        with runtime.autocast():
            out.append(model(x).float().cpu())
    return torch.cat(out)


def evaluate_accuracy(model: nn.Module, data: PreparedData, split: str, runtime: Runtime) -> float:
    s = data.splits[split]
    logits = predict_logits(model, data, s.images, runtime)
    return float((logits.argmax(1) == s.labels).float().mean())


def teacher_soft_targets(teacher: nn.Module, data: PreparedData, runtime: Runtime) -> torch.Tensor:
    """Teacher logits for every training image, unflipped and flipped: ``(2, N, C)``.

    The teacher is frozen and the only augmentation is a flip, so these two
    passes replace a teacher forward pass in every KD step of every epoch.
    """
    images = data.splits["train"].images
    return torch.stack(
        [predict_logits(teacher, data, images, runtime), predict_logits(teacher, data, images.flip(-1), runtime)]
    )


def recalibrate_batch_norm(model: nn.Module, data: PreparedData, runtime: Runtime, batches: int, seed: int) -> None:
    """Recompute batch-norm running statistics as a true average (fvcore's precise BN)."""
    from fvcore.nn.precise_bn import update_bn_stats

    generator = torch.Generator().manual_seed(seed)
    loader = [
        runtime.to_model(data.normalise(images, runtime.device))
        for _, _, images in itertools.islice(train_batches(data, 32, generator), batches)
    ]
    model.train()
    with torch.no_grad(), runtime.autocast():
        update_bn_stats(model, loader, num_iters=len(loader))


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
        teacher_logits: torch.Tensor | None = None,
        kd: KDSettings | None = None,
    ) -> None:
        self.model, self.data, self.settings, self.runtime = model, data, settings, runtime
        self.teacher_logits = teacher_logits
        self.kd = kd or KDSettings()  # used only with teacher logits
        self.labels = data.splits["train"].labels
        steps_per_epoch = max(1, math.ceil(len(self.labels) / settings.batch_size))
        self.optimizer = make_adamw(_param_groups(model, settings.weight_decay), settings.lr, runtime.device)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            warmup_cosine(
                settings.epochs * steps_per_epoch, int(settings.warmup_epochs * steps_per_epoch), settings.min_lr_ratio
            ),
        )
        self.scaler = runtime.grad_scaler()

    def loss(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        runtime = self.runtime
        x = runtime.to_model(self.data.normalise(images, runtime.device))
        y = self.labels[idx].to(runtime.device)
        with runtime.autocast():
            logits = self.model(x)
            if self.teacher_logits is not None:
                t = self.teacher_logits[flipped.long(), idx].to(runtime.device)
                return kd_loss(logits, t, y, self.kd.temperature, self.kd.alpha)
            return F.cross_entropy(logits.float(), y, label_smoothing=self.settings.label_smoothing)

    def step(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> float:
        """One optimiser update on a batch (the model must be in train mode); returns the batch's mean loss."""
        loss = self.loss(idx, flipped, images)
        optimizer, scaler, clip = self.optimizer, self.scaler, self.settings.grad_clip
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), clip, foreach=True)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            clipped_step(optimizer, clip)
        self.schedule.step()
        return float(loss.detach())


def fit(
    model: nn.Module,
    data: PreparedData,
    settings: TrainSettings,
    runtime: Runtime,
    seed: int,
    teacher_logits: torch.Tensor | None = None,
    kd: KDSettings | None = None,
    on_epoch: EpochCallback | None = None,
    bn_batches: int = 8,
) -> TrainResult:
    """Train ``model`` in place on the train split; keep the best validation epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    runtime.prepare_model(model)
    trainer = Trainer(model, data, settings, runtime, teacher_logits, kd)
    use_bn = has_batch_norm(model)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(1, settings.epochs + 1):
        model.train()
        started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for idx, flipped, images in train_batches(data, settings.batch_size, generator):
            loss_sum += trainer.step(idx, flipped, images) * len(idx)
            seen += len(idx)
        runtime.synchronize()
        elapsed = time.perf_counter() - started
        result.train_seconds += elapsed
        result.train_images += seen
        result.epoch_times.append((seen, elapsed))
        if use_bn:
            recalibrate_batch_norm(model, data, runtime, bn_batches, seed + epoch)
        val_acc = evaluate_accuracy(model, data, "val", runtime)
        row = {"epoch": epoch, "loss": loss_sum / max(1, seen), "val_accuracy": val_acc}
        result.history.append(row)
        if best_state is None or val_acc >= result.best_val_accuracy:
            result.best_epoch, result.best_val_accuracy = epoch, val_acc
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if on_epoch is not None:
            on_epoch(epoch, settings.epochs, row)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def eval_split_predictions(model: nn.Module, data: PreparedData, split: str, runtime: Runtime) -> torch.Tensor:
    return predict_logits(model, data, data.splits[split].images, runtime).argmax(1)


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TEMPERATURE",
    "KDSettings",
    "TrainResult",
    "Trainer",
    "fit",
    "kd_loss",
    "teacher_soft_targets",
]
