"""Hinton KD: cross-entropy to the labels mixed with KL divergence to the teacher's softened outputs.

Computes exactly what medkd-bench's KD cells computed before methods were
plugins (``medkd_bench.kd_loss``, the cached soft targets): same loss, same
student RNG stream, same results at the same seed.
"""

from torch import nn

from medkd_bench import LogUniform, MethodSpec, Uniform, hookimpl, kd_loss


class HintonKD(nn.Module):
    """``alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``."""

    def __init__(self, temperature: float, alpha: float):
        super().__init__()
        self.temperature, self.alpha = temperature, alpha

    def forward(self, student, teacher, targets, epoch):
        return kd_loss(student.logits, teacher.logits, targets, self.temperature, self.alpha)


@hookimpl
def register_methods(register):
    register(
        MethodSpec(
            name="kd",
            build=lambda ctx: HintonKD(ctx.options["temperature"], ctx.options["alpha"]),
            citation="Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, NIPS 2014 Deep "
            "Learning Workshop, arXiv:1503.02531",
            description="Logits only: alpha * CE + (1 - alpha) * T^2 * KL(teacher || student) on softened outputs. "
            "T = 4 as in the standard KD baseline of Tian et al. (CRD, ICLR 2020); alpha = 0.5 weighs labels and "
            "teacher equally, the hybrid supervision of the source study.",
            options={"temperature": 4.0, "alpha": 0.5},
            option_ranges={"temperature": (0.01, 100.0), "alpha": (0.0, 1.0)},
            # Temperatures 1-16 cover what KD papers report best (Hinton et al.: 1-20; mdistiller: 4);
            # alpha (the labels' share) from all-teacher to mostly-labels; 1 would not distil at all.
            search_space={"temperature": LogUniform(1.0, 16.0), "alpha": Uniform(0.0, 0.9)},
        )
    )
