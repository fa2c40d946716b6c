"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017): match normalised spatial attention maps.

A layer's attention map is the channel mean of its squared activations,
flattened and L2-normalised; the loss is the mean squared difference of the
student's and the teacher's maps, as in the authors' code (their paper's
Eq. 2 differs; torchdistill's ``ATLoss(mode="code")`` is the same formula).
"""

import torch.nn.functional as F
from torch import nn

from medkd_bench import MethodSpec, hookimpl


def attention_map(features, p: float = 2.0):
    """``normalize(mean_c |f|^p)``, flattened: ``(N, H*W)``."""
    return F.normalize(features.float().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student_features, teacher_features, p: float = 2.0):
    """Mean squared difference of the two attention maps, the larger map pooled to the smaller's grid."""
    s, t = student_features, teacher_features
    if s.shape[-2:] != t.shape[-2:]:
        size = min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1])
        s, t = F.adaptive_avg_pool2d(s.float(), size), F.adaptive_avg_pool2d(t.float(), size)
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()


class AttentionTransfer(nn.Module):
    def __init__(self, options):
        super().__init__()
        self.o = dict(options)

    def forward(self, student, teacher, targets, epoch):
        o = self.o
        ce = F.cross_entropy(student.logits.float(), targets)
        at = sum(at_loss(fs, ft, o["p"]) for fs, ft in zip(student.features, teacher.features, strict=True))
        return o["ce_weight"] * ce + o["at_weight"] * at


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="at",
            build=lambda ctx: AttentionTransfer(ctx.options),
            needs=("features",),
            citation="Zagoruyko & Komodakis, Paying More Attention to Attention: Improving the Performance of "
            "Convolutional Neural Networks via Attention Transfer, ICLR 2017, arXiv:1612.03928",
            description="Features: CE + at_weight * mean((a_s - a_t)^2), a = normalize(mean_c f^p) at the models' "
            "stride-16 target layers. p = 2 and weight 1000 as in the authors' code (beta/2 with beta = 1000 there "
            "is applied per pair of a sum; mdistiller's AT uses 1000).",
            options={"at_weight": 1000.0, "p": 2.0, "ce_weight": 1.0, "student_layer": "target",
                     "teacher_layer": "target"},
            option_ranges={"p": (0.5, 8.0)},
        )
    )
