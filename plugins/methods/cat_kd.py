"""Class attention transfer (Guo et al., CVPR 2023): match the teacher's class activation maps.

CAT-KD transfers where each class's evidence lies: the class activation maps
of teacher and student (last feature map times the classifier, per location)
are average-pooled to a small grid, L2-normalised per class map, and matched
with a mean squared error, next to cross-entropy. It is the explanation-guided
method of the built-in set.
"""

import torch.nn.functional as F
from torch import nn

from medkd_bench import MethodSpec, hookimpl


def cat_loss(student_maps, teacher_maps, resolution: int, normalise: bool = True):
    """MSE between class activation maps pooled to ``resolution`` and (optionally) L2-normalised per map."""
    s = F.adaptive_avg_pool2d(student_maps.float(), resolution)
    t = F.adaptive_avg_pool2d(teacher_maps.float(), resolution)
    if normalise:
        s, t = F.normalize(s, dim=(2, 3)), F.normalize(t, dim=(2, 3))
    return F.mse_loss(s, t)


class ClassAttentionTransfer(nn.Module):
    def __init__(self, options):
        super().__init__()
        self.o = dict(options)

    def forward(self, student, teacher, targets, epoch):
        o = self.o
        ce = F.cross_entropy(student.logits.float(), targets)
        cat = cat_loss(student.class_maps, teacher.class_maps, o["resolution"], o["normalise"])
        return o["ce_weight"] * ce + o["cat_weight"] * cat


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="cat-kd",
            build=lambda ctx: ClassAttentionTransfer(ctx.options),
            needs=("class_maps",),
            citation="Guo, Zhou, Xie, Yang, Qian & Cheng, Class Attention Transfer Based Knowledge Distillation, "
            "CVPR 2023, arXiv:2304.12777",
            description="Class maps: CE + cat_weight * MSE of the class activation maps pooled to 2x2 and "
            "L2-normalised per map (the paper's CIFAR setting: weight 400, resolution 2, normalised). The maps apply "
            "each model's head at every location of its last feature map: exactly the CAM for a linear head after "
            "pooling (Visformer, Swin); for OFA-595's head (pooling, 1x1 conv, h-swish, linear) and VGG19's "
            "(7x7-conv MLP, then linear) the whole non-linear head runs per location.",
            options={"cat_weight": 400.0, "resolution": 2, "normalise": True, "ce_weight": 1.0},
            option_ranges={"resolution": (1, 64)},
        )
    )
