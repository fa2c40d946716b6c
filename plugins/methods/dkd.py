"""Decoupled KD (Zhao et al., CVPR 2022): target-class and non-target-class KD, weighted separately.

KD's KL term splits into TCKD, a binary KL on (target, all others), and NCKD,
a KL among the non-target classes alone; classical KD weighs NCKD by the
teacher's confidence in the target, which DKD undoes with its own weights.

Settings from the authors' code (megvii-research/mdistiller): CE weight 1,
alpha 1, beta 8, T 4, warm-up 20 (mdistiller/engine/cfg.py lines 163-167), of
240 epochs in every CIFAR-100 config; six of the eleven configs in
configs/cifar100/dkd/ set beta lower (2.0 for res56_res20 and res110_res32, 6.0
for vgg13_mv2, vgg13_vgg8, wrn40_2_wrn_16_2 and wrn40_2_wrn_40_1). Their warm-up
multiplies the DKD term by ``min(epoch / 20, 1.0)`` (mdistiller/distillers/DKD.py
line 72) with the whole epoch number counted from 1 (mdistiller/engine/trainer.py
lines 78 and 164): a staircase of 1/20, 2/20, ... per epoch, never 0. Ours ramps
per optimiser step from 0 on the first step to 1 after ``warmup_epochs`` epochs
(1 by default: the student's own learning-rate warm-up. The authors' 20 is 8% of
their 240 epochs; our students stop on a plateau after 18-62 epochs (synthetic-cxr,
benchmarks/RESULTS.md session 18), so 20 would ramp over a third of training or more).
"""

import torch
import torch.nn.functional as F
from torch import nn

from medkd_bench import LogUniform, MethodSpec, hookimpl


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
             alpha: float, beta: float, temperature: float) -> torch.Tensor:
    """``alpha * TCKD + beta * NCKD``, each ``T^2 * KL(teacher || student)``, batch mean.

    Computed in log space (log-sum-exp over the non-target classes) rather than
    with the reference code's ``-1000`` logit mask, so it stays finite for any logits.
    """
    t = temperature
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    target = F.one_hot(targets, log_s.shape[1]).bool()

    def binary(log_p: torch.Tensor) -> torch.Tensor:  # log of (p_target, sum of the others)
        return torch.stack([log_p[target], log_p.masked_fill(target, -torch.inf).logsumexp(1)], dim=1)

    bin_s, bin_t = binary(log_s), binary(log_t)
    tckd = (bin_t.exp() * (bin_t - bin_s)).sum(1).mean()
    # Among the non-target classes: softmax of the logits with the target left out.
    nt_s = F.log_softmax(student_logits.float().masked_fill(target, -torch.inf) / t, dim=1)
    nt_t = F.log_softmax(teacher_logits.float().masked_fill(target, -torch.inf) / t, dim=1)
    nckd = torch.where(target, 0.0, nt_t.exp() * (nt_t - nt_s)).sum(1).mean()
    return (alpha * tckd + beta * nckd) * t * t


def warmup_weight(epoch: float, warmup_epochs: float) -> float:
    """The DKD term's weight: ``epoch / warmup_epochs`` capped at 1 (1 throughout without a warm-up).

    ``epoch`` is the fractional progress the trainer passes (steps taken over
    steps per epoch), so the weight rises per optimiser step from 0 on the first.
    """
    return min(epoch / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0


class DecoupledKD(nn.Module):
    """``ce_weight * CE + warmup_weight * dkd_loss``."""

    def __init__(self, options):
        super().__init__()
        self.o = dict(options)

    def forward(self, student, teacher, targets, epoch):
        o = self.o
        ce = F.cross_entropy(student.logits.float(), targets)
        dkd = dkd_loss(student.logits, teacher.logits, targets, o["alpha"], o["beta"], o["temperature"])
        return o["ce_weight"] * ce + warmup_weight(epoch, o["warmup_epochs"]) * dkd


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="dkd",
            build=lambda ctx: DecoupledKD(ctx.options),
            citation="Zhao, Cui, Song, Qiu & Liang, Decoupled Knowledge Distillation, CVPR 2022, arXiv:2203.08679",
            description="Logits only: CE + w * T^2 * (alpha * TCKD + beta * NCKD). alpha 1, beta 8, T 4, CE "
            "weight 1: the defaults of the authors' code (mdistiller engine/cfg.py; six of its eleven CIFAR-100 "
            "configs lower beta to 2 or 6). There w = min(epoch / 20, 1) per whole epoch counted from 1 (of 240); "
            "here w rises per optimiser step from 0 on the first step to 1 after warmup_epochs (1, the student's "
            "own learning-rate warm-up).",
            options={"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0, "warmup_epochs": 1.0},
            option_ranges={"temperature": (0.01, 100.0)},
            # The authors tune beta per teacher (CIFAR-100: 1-8 with alpha 1; ImageNet: 0.5 and 0.5);
            # measured here, beta 2 beat the default 8 by 20 pp on synthetic-cxr.
            search_space={"alpha": LogUniform(0.25, 4.0), "beta": LogUniform(0.5, 16.0),
                          "temperature": LogUniform(1.0, 16.0)},
        )
    )
