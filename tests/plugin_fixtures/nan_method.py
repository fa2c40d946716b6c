"""A distillation method whose loss turns NaN: its own cells must fail, every other cell finish."""

import torch
from torch import nn

from medkd_bench import MethodSpec, hookimpl


class NaNLoss(nn.Module):
    def forward(self, student, teacher, targets, epoch):
        return student.logits.float().mean() * torch.tensor(float("nan"))


@hookimpl
def register_methods(register):
    register(MethodSpec(name="nan-loss", build=lambda ctx: NaNLoss(), citation="test fixture"))
