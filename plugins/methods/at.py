"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017): match normalised spatial attention maps.

What the authors' code computes (szagoruyko/attention-transfer, commit 893df54):
``at(x) = F.normalize(x.pow(2).mean(1).view(N, -1))`` and
``at_loss(x, y) = (at(x) - at(y)).pow(2).mean()`` (utils.py lines 18-23); the
student's loss is cross-entropy (``utils.distillation`` with the default
``--alpha 0``, cifar.py line 56) plus ``beta * sum(at_loss per pair)`` with
``beta = 1e+3`` (cifar.py lines 220-223, imagenet.py lines 267-270, the
``--beta 1e+3`` commands in README.md lines 68 and 114): no ``beta / 2``, which
only the paper's Eq. 2 has (together with a non-squared norm of the difference;
torchdistill's ``ATLoss(mode="paper")`` is that one). mdistiller's AT is the same
code with ``p`` as a parameter: ``feat.pow(p)`` (mdistiller/distillers/AT.py
line 10), the larger map average-pooled to the smaller's size (lines 12-16),
summed over pairs (line 21), weight 1000 and ``p = 2`` (mdistiller/engine/cfg.py
lines 68 and 71). We follow the authors' code: ``at_weight * sum`` over the
pairs of ``mean((a_s - a_t)^2)``, ``at_weight = 1000``, ``p = 2``.

For ``p != 2`` we take ``|f|^p``, the paper's ``F^p_sum(A) = sum_i |A_i|^p``
(Sec. 3.1), instead of mdistiller's ``f^p``: our target layers can be signed
(transformer token maps, pre-activation blocks), where an odd ``p`` lets
negative activations cancel positive ones and a fractional ``p`` gives NaN. For
``p = 2`` the two are the same. ``p`` must lie in :data:`P_RANGE`: below 1 the
gradient of ``|f|^p`` is infinite where ``f = 0`` (every post-ReLU zero), so the
backward pass gives NaN.
"""

import torch
import torch.nn.functional as F
from torch import nn

from medkd_bench import Choice, LogUniform, MedkdError, MethodSpec, hookimpl

#: Allowed exponents, inclusive: the option's range (checked when the option is parsed) and the module's.
P_RANGE = (1.0, 8.0)


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``normalize(mean_c |f|^p)``, flattened: ``(N, H*W)``.

    Each sample's map is divided by its largest ``|f|`` before the power: the
    normalisation makes the result the same (exactly so in real arithmetic),
    but ``|f|^8`` of an activation of 1e5 would overflow float32 to inf (NaN
    after normalising) and of 1e-3 would fall below ``F.normalize``'s epsilon.
    """
    f = features.float().abs()
    scale = f.flatten(1).amax(1).clamp_min(torch.finfo(torch.float32).tiny).detach()
    return F.normalize((f / scale.view(-1, 1, 1, 1)).pow(p).mean(1).flatten(1), dim=1)


def at_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean squared difference of the two attention maps, the larger map pooled to the smaller's grid."""
    s, t = student_features, teacher_features
    if s.shape[-2:] != t.shape[-2:]:
        size = min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1])
        s, t = F.adaptive_avg_pool2d(s.float(), size), F.adaptive_avg_pool2d(t.float(), size)
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()


class AttentionTransfer(nn.Module):
    """``ce_weight * CE + at_weight * sum over feature pairs of at_loss``."""

    def __init__(self, options):
        super().__init__()
        self.o = dict(options)
        low, high = P_RANGE
        if not low <= self.o["p"] <= high:  # the CLI refuses it first; this guards programmatic use
            raise MedkdError(f"method 'at': option p = {self.o['p']:g} is out of range ({low:g} .. {high:g}): "
                             "below 1 the gradient of |f|^p is infinite at f = 0")

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
            description="Features: CE + at_weight * sum over layer pairs of mean((a_s - a_t)^2), "
            "a = normalize(mean_c |f|^p), at the models' stride-16 target layers. As the authors' code computes it "
            "(attention-transfer utils.py at()/at_loss(), cifar.py: CE + beta * sum of the pairs' losses, "
            "beta = 1e+3, no beta/2, p = 2); mdistiller's AT is the same with weight 1000 and p = 2. For other p "
            "the absolute value (the paper's F^p_sum, Sec. 3.1): target layers can be signed; p in [1, 8].",
            # 2: |f|^p instead of f^p (differs for odd or fractional p on signed maps), maps scaled by their
            # largest |f| before the power (no overflow for large p), p >= 1.
            revision="2",
            options={"at_weight": 1000.0, "p": 2.0, "ce_weight": 1.0, "student_layer": "target",
                     "teacher_layer": "target"},
            layer_options={"student": "student_layer", "teacher": "teacher_layer"},
            option_ranges={"p": P_RANGE},
            # Two decades either side of the paper's 1000 (the maps' scale differs per layer); the
            # paper's p = 2 and its two neighbours on a doubling scale.
            search_space={"at_weight": LogUniform(10.0, 100_000.0), "p": Choice((1.0, 2.0, 4.0))},
        )
    )
