"""Distillation losses. Hinton KD: cross-entropy to the labels mixed with KL divergence to soft targets.

Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, 2015:
``alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Hinton et al. (2015) soften with T > 1; T=4 is the setting of the standard
#: KD baseline in Tian et al., "Contrastive Representation Distillation" (ICLR 2020).
DEFAULT_TEMPERATURE = 4.0


#: Equal weight on ground truth and teacher: the "hybrid supervision" of the source study.
DEFAULT_ALPHA = 0.5


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
