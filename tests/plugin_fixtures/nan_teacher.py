"""A teacher whose logits are NaN: its cell must fail, and nothing computed from it may be stored or cached."""

import torch
from torch import nn

from medkd_bench import TeacherSpec, TrainSettings, hookimpl, last_module


class NaNNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3))) * torch.tensor(float("nan"))


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="nan-teacher", build=lambda num_classes, img_size: NaNNet(num_classes),
                         target_layers=last_module("features"), train=TrainSettings(epochs=1)))
