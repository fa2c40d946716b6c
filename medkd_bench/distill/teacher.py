"""The teacher's side of a distillation step: its outputs on the batch, cached per image and flip or computed per batch.

The teacher is frozen and the only augmentation is a horizontal flip, so its
outputs on every training image, plain and flipped, can be computed once and
indexed per batch: the logits always (the run's soft-target file), feature and
class maps when they fit the memory budget. Otherwise the teacher runs on each
batch, without gradients. The choice is made by measuring one image's outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.distill.taps import OutputTaps
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import ModelOutputs
from medkd_bench.train.finite import require_finite

#: Default memory budget for a teacher's cached feature and class maps (both flips of every training image).
DEFAULT_CACHE_MB = 2048


def outputs_nbytes(outputs: ModelOutputs) -> int:
    """Bytes of float32 feature and class maps in ``outputs`` (logits are cached anyway)."""
    tensors = [*outputs.features, *([outputs.class_maps] if outputs.class_maps is not None else [])]
    return sum(t.numel() * 4 for t in tensors)


def _as_float(outputs: ModelOutputs) -> ModelOutputs:
    return ModelOutputs(outputs.logits.float(), tuple(f.float() for f in outputs.features),
                        None if outputs.class_maps is None else outputs.class_maps.float())


class TeacherSide:
    """Serves :class:`ModelOutputs` of the teacher for a batch ``(idx, flipped, images)``.

    ``logits`` is the ``(2, N, classes)`` soft-target tensor. Without feature
    needs, that is all a batch reads (exactly the logits-only KD path). With
    them, :meth:`prepare` measures one image's maps and caches every image's
    when they fit in ``budget_mb``, else every batch runs the teacher.
    """

    def __init__(self, logits: torch.Tensor, teacher: nn.Module | None, taps: OutputTaps | None,
                 data: PreparedData, runtime: Runtime, device: torch.device, budget_mb: float = DEFAULT_CACHE_MB):
        self.logits, self.teacher, self.taps = logits, teacher, taps
        self.data, self.runtime, self.device, self.budget_mb = data, runtime, device, budget_mb
        self.cached: list[ModelOutputs] | None = None  # [plain, flipped], each over the whole train split
        #: Where a batch's teacher maps come from: "logits" (none needed), "cached" or "per-batch".
        self.path = "logits"
        if taps is not None:
            self._prepare()

    def _run(self, images: torch.Tensor) -> ModelOutputs:
        """The teacher's outputs on uint8 images, float32, without gradients, in eval mode."""
        assert self.teacher is not None and self.taps is not None
        self.teacher.eval()
        x = self.runtime.to_model(self.data.normalise(images, self.runtime.device))
        with torch.no_grad(), self.runtime.autocast():
            return _as_float(self.taps(x))

    def _prepare(self) -> None:
        images = self.data.splits["train"].images
        probe = self._run(images[:1])
        if outputs_nbytes(probe) * 2 * len(images) > self.budget_mb * 2**20:
            self.path = "per-batch"
            return
        self.path = "cached"
        self.cached = [self._cache_split(images), self._cache_split(images.flip(-1))]

    def _cache_split(self, images: torch.Tensor, batch_size: int = 128) -> ModelOutputs:
        parts = [self._run(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
        features = tuple(require_finite(torch.cat([p.features[k].cpu() for p in parts]), "the teacher's feature maps")
                         for k in range(len(parts[0].features)))
        maps = (None if parts[0].class_maps is None else
                require_finite(torch.cat([p.class_maps.cpu() for p in parts]), "the teacher's class maps"))
        return ModelOutputs(torch.empty(0), features, maps)

    def outputs(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> ModelOutputs:
        logits = self.logits[flipped.long(), idx].to(self.device)
        if self.taps is None:
            return ModelOutputs(logits)
        if self.cached is None:  # per batch: the teacher sees the batch as the student does
            live = self._run(images)
            return ModelOutputs(logits, tuple(f.to(self.device) for f in live.features),
                                None if live.class_maps is None else live.class_maps.to(self.device))
        plain, flip = self.cached
        take = flipped.bool()

        def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            rows = torch.where(take.view(-1, *[1] * (a.dim() - 1)), b[idx], a[idx])
            return rows.to(self.device, non_blocking=True)

        features = tuple(pick(a, b) for a, b in zip(plain.features, flip.features, strict=True))
        maps = None if plain.class_maps is None else pick(plain.class_maps, flip.class_maps)
        return ModelOutputs(logits, features, maps)
