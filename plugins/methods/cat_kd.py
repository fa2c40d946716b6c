"""Class attention transfer (Guo et al., CVPR 2023): match the teacher's class activation maps.

CAT-KD transfers where each class's evidence lies: the class activation maps
of teacher and student (last feature map times the classifier, per location)
are average-pooled to a small grid, L2-normalised per class map, and matched
with a mean squared error, next to cross-entropy. It is the explanation-guided
method of the built-in set.

The loss is the authors' ``CAT_loss`` (GzyAftermath/CAT-KD,
mdistiller/distillers/CAT_KD.py lines 72-81: ``adaptive_avg_pool2d`` to
``CAM_RESOLUTION``, optional ``F.normalize(dim=(2, 3))``, ``F.mse_loss``), weighted
by ``CAT_loss_weight`` next to ``CE_WEIGHT * CE`` (lines 54-59). Their CAMs have
no bias: the classifier becomes a 1x1 convolution with ``bias=False``
(mdistiller/models/cifar/resnet.py line 245) loaded with ``fc.weight`` only
(tools/train.py lines 133-139). Ours match that, see
:func:`medkd_bench.distill.taps.head_at_locations`.

Settings. The eleven official CIFAR-100 configs (configs/cifar100/CAT_KD/*.yaml)
set the weight per pair from 0.7 to 600: normalised CAMs use 15 (vgg13_mv2),
40 (res50_mv2), 80 (wrn40_2_shuv1) and 600 (res32x4_shuv1, res32x4_shuv2), the
last three at 4x4; unnormalised ones 0.7 to 15, all at 2x2. The value 400 appears
only as the framework's fallback (mdistiller/engine/cfg.py line 37, with
``IF_NORMALIZE = True`` and ``CAM_RESOLUTION = 2`` on lines 27 and 38), which every
config overrides. We use 2x2, normalised, weight 40: res50_mv2.yaml's setting (a
large teacher into a MobileNetV2, the family of our OFA-595 student). Normalised
2x2 maps keep the MSE at most 1, so 40 also keeps the CAT loss inside the
"1~50 after the first epoch" the authors' README advises.
"""

import torch
import torch.nn.functional as F
from torch import nn

from medkd_bench import Choice, LogUniform, MethodSpec, hookimpl


def cat_loss(student_maps: torch.Tensor, teacher_maps: torch.Tensor, resolution: int,
             normalise: bool = True) -> torch.Tensor:
    """MSE between class activation maps pooled to ``resolution`` and (optionally) L2-normalised per map."""
    s = F.adaptive_avg_pool2d(student_maps.float(), resolution)
    t = F.adaptive_avg_pool2d(teacher_maps.float(), resolution)
    if normalise:
        s, t = F.normalize(s, dim=(2, 3)), F.normalize(t, dim=(2, 3))
    return F.mse_loss(s, t)


class ClassAttentionTransfer(nn.Module):
    """``ce_weight * CE + cat_weight * cat_loss`` on the two models' class maps."""

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
            citation="Guo, Yan, Li & Lin, Class Attention Transfer Based Knowledge Distillation, "
            "CVPR 2023, arXiv:2304.12777",
            description="Class maps: CE + cat_weight * MSE of the class activation maps pooled to 2x2 and "
            "L2-normalised per map, the authors' CAT_loss. Weight 40, 2x2, normalised: the official CIFAR-100 "
            "config res50_mv2.yaml (the eleven configs use 0.7 to 600; 400 is only the code's unused fallback in "
            "engine/cfg.py). CAMs without the bias, as in the authors' code: each model's head runs at every "
            "location of its last feature map minus its output for a zero location, exactly W f for a linear head "
            "after pooling (Visformer, Swin); for OFA-595's head (pooling, 1x1 conv, h-swish, linear) and VGG19's "
            "(7x7-conv MLP, then linear) the whole non-linear head runs per location.",
            # 2: CAMs without the head's bias (the authors'); default weight 400 -> 40.
            revision="2",
            options={"cat_weight": 40.0, "resolution": 2, "normalise": True, "ce_weight": 1.0},
            option_ranges={"resolution": (1, 64)},
            # The authors' CIFAR-100 configs use weights from 0.7 to 600 and tell users to tune it.
            search_space={"cat_weight": LogUniform(0.4, 4000.0), "resolution": Choice((1, 2, 4))},
        )
    )
