"""A teacher with one class too many outside training: C logits while it trains, C+1 when evaluated.

Unchecked, its cell was stored done with accuracy 0.0, specificity 100% and an
all-zero confusion matrix (no label matches the extra column its argmax picks),
and its (N, C+1) soft targets were cached for every student distilled from it.
"""

from torch import nn

from medkd_bench import TeacherSpec, TrainSettings, hookimpl, last_module


class ShapeShifter(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, num_classes + 1)

    def forward(self, x):
        logits = self.head(self.features(x).mean((2, 3)))
        if self.training:
            return logits[:, :-1]
        logits[:, -1] = logits[:, -1] + 100.0  # the extra class always wins in evaluation
        return logits


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="shape-shifter", build=lambda num_classes, img_size: ShapeShifter(num_classes),
                         target_layers=last_module("features"), train=TrainSettings(epochs=1)))
