"""The teacher split of the generated datasets: the students' training images, and more of them.

Trained from random weights on the few hundred images a student gets, no teacher
beats the label-only OFA-595 on the chest task (at 360, 1,080 and 2,000 shared
images; ``benchmarks/RESULTS.md``, 2026-12-04 and 2026-12-05), so no comparison of
distillation methods could be made against a teacher worth distilling from. Real
teachers have seen far more data than the task's own training split (the source
study's come ImageNet-pretrained); the generated datasets stand that in with more
images of their own kind: ``teacher_train_factor`` times ``n_train`` images, the
first ``n_train`` of which are exactly the students' training split, the rest drawn
from a stream of their own (never validation or test). A factor of 1 trains
teachers on the students' images alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from medkd_bench import SplitData

#: The split name the generated datasets serve for teachers (``DatasetSpec.teacher_split``).
TEACHER_SPLIT = "teacher-train"
#: The stream the teacher's extra images come from, beside ``train``, ``val`` and ``test``.
EXTRA_STREAM = "teacher-extra"

Generate = Callable[[str, int, int, Mapping[str, Any]], SplitData]


def teacher_train(generate: Generate, img_size: int, opts: Mapping[str, Any]) -> SplitData:
    """``n_train`` images of the ``train`` stream, then ``(teacher_train_factor - 1) * n_train`` of :data:`EXTRA_STREAM`."""
    train = generate("train", int(opts["n_train"]), img_size, opts)
    extra = round(float(opts["teacher_train_factor"]) * len(train)) - len(train)
    if extra <= 0:
        return train
    more = generate(EXTRA_STREAM, extra, img_size, opts)
    return SplitData(images=torch.cat([train.images, more.images]), labels=torch.cat([train.labels, more.labels]),
                     masks={k: torch.cat([train.masks[k], more.masks[k]]) for k in train.masks})


def load_split(generate: Generate, split: str, img_size: int, opts: Mapping[str, Any]) -> SplitData:
    """One split of a generated dataset: ``train``, ``val``, ``test`` or :data:`TEACHER_SPLIT`."""
    if split == TEACHER_SPLIT:
        return teacher_train(generate, img_size, opts)
    return generate(split, int(opts[f"n_{split}"]), img_size, opts)
