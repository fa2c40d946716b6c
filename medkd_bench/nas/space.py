"""The search space: OFA's MobileNetV3 supernet and the subnets it holds.

``OFAMobileNetV3`` with kernel 3/5/7, expand ratio 3/4/6 and depth 2/3/4 per
stage, at width 1.0 or 1.2 (OFA-595's supernet). A subnet is a
:class:`SubnetSettings`; :func:`build_subnet` makes it a standalone network,
optionally inheriting a local supernet checkpoint's weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

KERNEL_SIZES = (3, 5, 7)


EXPAND_RATIOS = (3, 4, 6)


DEPTHS = (2, 3, 4)


N_STAGES = 5


BLOCKS_PER_STAGE = max(DEPTHS)


N_BLOCKS = N_STAGES * BLOCKS_PER_STAGE


WIDTH_MULTS = (1.0, 1.2)


@dataclass(frozen=True)
class SubnetSettings:
    """One point of the supernet's elastic space, in ``set_active_subnet`` terms.

    ``ks`` and ``e`` have one entry per elastic block (5 stages x 4); entries of
    blocks cut off by a stage's depth do not change the model and are kept at
    the smallest choice so equal models have equal settings.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    width_mult: float = 1.2

    def active_blocks(self) -> list[int]:
        """Indices (0..19) of the elastic blocks this subnet keeps."""
        return [s * BLOCKS_PER_STAGE + j for s in range(N_STAGES) for j in range(self.d[s])]

    def canonical(self) -> SubnetSettings:
        active = set(self.active_blocks())
        ks = tuple(k if i in active else KERNEL_SIZES[0] for i, k in enumerate(self.ks))
        e = tuple(x if i in active else EXPAND_RATIOS[0] for i, x in enumerate(self.e))
        return SubnetSettings(ks, e, tuple(self.d), self.width_mult)

    def problems(self) -> list[str]:
        out = []
        if len(self.ks) != N_BLOCKS or any(k not in KERNEL_SIZES for k in self.ks):
            out.append(f"ks must be {N_BLOCKS} values from {list(KERNEL_SIZES)}")
        if len(self.e) != N_BLOCKS or any(x not in EXPAND_RATIOS for x in self.e):
            out.append(f"e must be {N_BLOCKS} values from {list(EXPAND_RATIOS)}")
        if len(self.d) != N_STAGES or any(x not in DEPTHS for x in self.d):
            out.append(f"d must be {N_STAGES} values from {list(DEPTHS)}")
        if self.width_mult not in WIDTH_MULTS:
            out.append(f"width_mult must be one of {list(WIDTH_MULTS)}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "width_mult": self.width_mult}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical().as_json(), sort_keys=True).encode()).hexdigest()[:12]


SMALLEST = SubnetSettings((3,) * N_BLOCKS, (3,) * N_BLOCKS, (2,) * N_STAGES)


LARGEST = SubnetSettings((7,) * N_BLOCKS, (6,) * N_BLOCKS, (4,) * N_STAGES)


def build_supernet(num_classes: int, width_mult: float = 1.2) -> nn.Module:
    """The OFA MobileNetV3 supernet, randomly initialised (``ofa.model_zoo`` would download)."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    return OFAMobileNetV3(n_classes=num_classes, dropout_rate=0.1, width_mult=width_mult,
                          ks_list=list(KERNEL_SIZES), expand_ratio_list=list(EXPAND_RATIOS),
                          depth_list=list(DEPTHS))


def load_supernet_weights(supernet: nn.Module, path: Path) -> int:
    """Copy a user-supplied supernet checkpoint into ``supernet``; returns tensors loaded.

    Read safely (safetensors, or ``torch.load(weights_only=True)``). OFA's own
    checkpoints name the blocks' conv ``mobile_inverted_conv``; that is renamed.
    The classifier usually has another class count and is left fresh.
    """
    from medkd_bench.models.weights import apply_state_dict, read_state_dict

    state = {k.replace(".mobile_inverted_conv.", ".conv."): v for k, v in read_state_dict(path).items()}
    return apply_state_dict(supernet, state, f"--supernet-weights {path}").loaded


def build_subnet(settings: SubnetSettings, num_classes: int, supernet_weights: Path | None = None) -> nn.Module:
    """The subnet as a standalone ``MobileNetV3``, via ``get_active_subnet(preserve_weight=True)``.

    With ``supernet_weights`` the subnet inherits the trained supernet's
    weights for its kernel sizes, expand ratios and depths.
    """
    supernet = build_supernet(num_classes, settings.width_mult)
    if supernet_weights is not None:
        load_supernet_weights(supernet, supernet_weights)
    supernet.set_active_subnet(ks=list(settings.ks), e=list(settings.e), d=list(settings.d))
    return supernet.get_active_subnet(preserve_weight=True)
