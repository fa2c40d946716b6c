"""A distillation method whose loss kills its process: the pool worker tuning its arm dies, the other arms finish."""

import os

from torch import nn

from medkd_bench import MethodSpec, hookimpl


class DyingLoss(nn.Module):
    def forward(self, student, teacher, targets, epoch):
        os._exit(3)


@hookimpl
def register_methods(register):
    register(MethodSpec(name="dies", build=lambda ctx: DyingLoss(), citation="test fixture"))
