"""The optimised training loop gives the same results as a textbook one.

``fit`` carries every speed-up of issue 9: teacher logits computed once per
dataset instead of a teacher forward pass per step, a fused AdamW, the
gradient norm from BLAS dot products folded into the optimiser's
``grad_scale`` instead of ``clip_grad_norm_``'s multiply. The reference loop
below has none of them: it runs the teacher on every (flipped) batch,
clips with ``clip_grad_norm_`` and steps a per-tensor AdamW. Same seed, same
batches: the per-epoch losses, validation accuracies and final weights must
agree to float32 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import prepare
from medkd_bench.distill.method import bind_method
from medkd_bench.registry import load_registry
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import TrainSettings
from medkd_bench.train.loop import fit, steps_per_epoch_of
from medkd_bench.train.losses import kd_loss
from medkd_bench.train.optim import param_groups
from medkd_bench.train.predict import evaluate_accuracy, teacher_soft_targets
from medkd_bench.train.schedule import warmup_cosine

CPU_FP32 = Runtime(torch.device("cpu"), None, channels_last=False)
SETTINGS = TrainSettings(epochs=3, batch_size=8, lr=3e-3, warmup_epochs=1, label_smoothing=0.1, grad_clip=0.5,
                         early_stopping=False)


def small_net(num_classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, num_classes),
    )


@pytest.fixture(scope="module")
def data():
    return prepare(load_registry().get("dataset", "synthetic-cxr"), 32, None, {"n_train": 36, "n_val": 12, "n_test": 6})


def reference_fit(model: nn.Module, data, settings: TrainSettings, seed: int, teacher: nn.Module | None):
    """Textbook hybrid-KD training: teacher forward per batch, clip_grad_norm_, per-tensor AdamW."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    labels = data.splits["train"].labels
    per_pass = math.ceil(len(labels) / settings.batch_size)
    passes = max(1, math.ceil(settings.min_steps_per_epoch / per_pass))  # a small split is passed over again
    steps = passes * per_pass
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr, foreach=False)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(settings.epochs * steps, int(settings.warmup_epochs * steps), settings.min_lr_ratio))
    history, best, best_state = [], -1.0, None
    for epoch in range(1, settings.epochs + 1):
        model.train()
        loss_sum, seen = 0.0, 0
        batches = [b for _ in range(passes) for b in train_batches(data, settings.batch_size, generator)]
        for idx, _, images in batches:
            x = data.normalise(images)
            logits = model(x)
            if teacher is not None:
                teacher.eval()
                with torch.no_grad():
                    soft = teacher(x)
                loss = kd_loss(logits, soft, labels[idx])
            else:
                loss = F.cross_entropy(logits, labels[idx], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=False)
            optimizer.step()
            schedule.step()
            loss_sum += float(loss) * len(idx)
            seen += len(idx)
        val = evaluate_accuracy(model, data, "val", CPU_FP32)
        history.append({"epoch": epoch, "loss": loss_sum / seen, "val_accuracy": val})
        if val >= best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return history


def assert_same_training(ours, theirs, model_ours: nn.Module, model_theirs: nn.Module) -> None:
    assert [r["val_accuracy"] for r in ours.history] == [r["val_accuracy"] for r in theirs]
    torch.testing.assert_close([r["loss"] for r in ours.history], [r["loss"] for r in theirs], rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(model_ours.state_dict().items(), model_theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("min_steps", [0, 10], ids=["one-pass", "two-passes"])
@pytest.mark.parametrize("kd", [False, True], ids=["label-only", "kd"])
def test_fit_matches_the_textbook_loop(data, kd, min_steps):
    """Also with epochs of several passes (``min_steps_per_epoch``): 36 images in batches of 8 make 5 steps a pass."""
    settings = SETTINGS.replace(min_steps_per_epoch=min_steps)
    teacher = small_net(data.num_classes, seed=7) if kd else None
    logits = teacher_soft_targets(teacher, data, CPU_FP32) if teacher is not None else None
    ours_model, theirs_model = small_net(data.num_classes, 1), small_net(data.num_classes, 1)
    distill = None
    if logits is not None:  # the built-in `kd` method plugin, as a matrix cell binds it
        kd_spec = load_registry().methods["kd"]
        distill = bind_method(kd_spec, kd_spec.options, teacher_logits=logits, data=data, student_runtime=CPU_FP32,
                              epochs=settings.epochs,
                              steps_per_epoch=steps_per_epoch_of(len(data.splits["train"]), settings))
    ours = fit(ours_model, data, settings, CPU_FP32, seed=3, distill=distill)
    theirs = reference_fit(theirs_model, data, settings, seed=3, teacher=teacher)
    assert ours.train_images == settings.epochs * 36 * max(1, math.ceil(min_steps / 5))
    assert_same_training(ours, theirs, ours_model, theirs_model)
    # training moved the weights and clipping was active, so the comparison means something
    assert ours.history[0]["loss"] != ours.history[-1]["loss"]
    initial = small_net(data.num_classes, 1)
    moved = (float((a - b).abs().max()) for a, b in zip(ours_model.parameters(), initial.parameters(), strict=True))
    assert max(moved) > 1e-2
