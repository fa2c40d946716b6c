"""The per-part cost lookup table: batch-1 latency and MACs of every part a subnet is made of.

As in OFA (Cai et al. 2020, Sec. 3.3), a subnet's latency is predicted as the
sum of its parts (stem, head, each elastic block at each kernel size and
expand ratio), timed on this machine the way the leaderboard times whole
models. The table is JSON under the work dir, keyed by machine description,
device, precision and image size, so a second search times nothing new.
fvcore counts each part's MACs once; a subnet's MACs are the exact sum.
"""

from __future__ import annotations

import copy
import json
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.evaluate.cost import timed_runs_ms
from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.nas.space import N_BLOCKS, SubnetSettings, build_supernet
from medkd_bench.runtime.device import Runtime, machine_description

LUT_FILE = "ofa_cost_lut.json"


@dataclass(frozen=True)
class Cost:
    latency_ms: float
    macs: float
    params: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


class _Stem(nn.Module):
    def __init__(self, supernet: nn.Module):
        super().__init__()
        self.first_conv = copy.deepcopy(supernet.first_conv)
        self.first_block = copy.deepcopy(supernet.blocks[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.first_block(self.first_conv(x))


class _Head(nn.Module):
    """What follows the last block in ``MobileNetV3.forward``."""

    def __init__(self, supernet: nn.Module):
        super().__init__()
        self.final_expand_layer = copy.deepcopy(supernet.final_expand_layer)
        self.feature_mix_layer = copy.deepcopy(supernet.feature_mix_layer)
        self.classifier = copy.deepcopy(supernet.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand_layer(x).mean(3, keepdim=True).mean(2, keepdim=True)
        return self.classifier(self.feature_mix_layer(x).view(x.size(0), -1))


def time_forward(module: nn.Module, x: torch.Tensor, runtime: Runtime, warmup: int, runs: int) -> float:
    """Median batch-1 latency in ms, timed like :func:`medkd_bench.evaluate.measure_latency`."""
    return statistics.median(timed_runs_ms(module, x, runtime, warmup, runs))


def count_macs(module: nn.Module, x: torch.Tensor) -> float:
    """fvcore's count (one fused multiply-add = one), as the leaderboard's GMACs column."""
    from fvcore.nn import FlopCountAnalysis

    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(module, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return float(analysis.total())


class CostTable:
    """Latency, MACs and parameters of every supernet part, measured lazily and cached as JSON.

    Latency entries are keyed by where they were measured (machine, device,
    precision, torch version: :func:`machine_description`) and the image size;
    MACs by image size only; parameters by neither. Each subnet is a sum of
    parts, so a whole search measures at most 2 + 20 x 9 parts once.
    """

    def __init__(self, path: Path | None, runtime: Runtime, img_size: int, width_mult: float = 1.2,
                 num_classes: int = 3, warmup: int = 5, runs: int = 20):
        self.path = path
        self.runtime = runtime
        self.img_size = img_size
        self.width_mult = width_mult
        self.num_classes = num_classes
        self.warmup, self.runs = warmup, runs
        self.machine = machine_description(runtime)
        self.data: dict[str, dict[str, float]] = {"latency_ms": {}, "macs": {}, "params": {}}
        self.measured = 0  # parts timed in this process (0 on a warm table)
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text())
                for section in self.data:
                    self.data[section].update(loaded.get(section, {}))
            except (ValueError, AttributeError, TypeError) as exc:
                raise MedkdError(f"cost table {path}: not a medkd-bench lookup table ({exc}); delete it") from exc
        self._supernet: nn.Module | None = None
        self._inputs: dict[str, tuple[int, ...]] = {}

    # keys ------------------------------------------------------------------
    def _keys(self, part: str) -> tuple[str, str, str]:
        arch = f"w{self.width_mult} | c{self.num_classes} | {part}" if part == "head" else f"w{self.width_mult} | {part}"
        return (f"{self.machine} | img {self.img_size} | {arch}", f"img {self.img_size} | {arch}", arch)

    @staticmethod
    def block_part(index: int, ks: int, e: int) -> str:
        return f"b{index}-k{ks}-e{e}"

    def parts(self, settings: SubnetSettings) -> list[str]:
        return ["stem", *(self.block_part(i, settings.ks[i], settings.e[i]) for i in settings.active_blocks()),
                "head"]

    # building and measuring parts ------------------------------------------------
    def _supernet_and_inputs(self) -> nn.Module:
        """The supernet and each part's input shape, from one forward pass at full size."""
        if self._supernet is None:
            supernet = build_supernet(self.num_classes, self.width_mult).eval()
            supernet.set_max_net()
            shapes: dict[str, tuple[int, ...]] = {}

            def record(key: str) -> Callable[[nn.Module, tuple], None]:
                def hook(_module: nn.Module, args: tuple) -> None:  # must return None: a value replaces args
                    shapes.setdefault(key, tuple(args[0].shape))
                return hook

            hooks = [supernet.blocks[i + 1].register_forward_pre_hook(record(f"b{i}")) for i in range(N_BLOCKS)]
            hooks.append(supernet.final_expand_layer.register_forward_pre_hook(record("head")))
            with torch.no_grad():
                supernet(torch.zeros(1, 3, self.img_size, self.img_size))
            for h in hooks:
                h.remove()
            shapes["stem"] = (1, 3, self.img_size, self.img_size)
            self._supernet, self._inputs = supernet, shapes
        return self._supernet

    def _module(self, part: str) -> tuple[nn.Module, tuple[int, ...]]:
        supernet = self._supernet_and_inputs()
        if part == "stem":
            return _Stem(supernet), self._inputs["stem"]
        if part == "head":
            return _Head(supernet), self._inputs["head"]
        index, ks, e = (int(x[1:]) for x in part.split("-"))
        block = supernet.blocks[index + 1]
        block.conv.active_kernel_size, block.conv.active_expand_ratio = ks, e
        in_shape = self._inputs[f"b{index}"]
        from ofa.utils.layers import ResidualBlock

        sub = ResidualBlock(block.conv.get_active_subnet(in_shape[1], preserve_weight=False),
                            copy.deepcopy(block.shortcut))
        return sub, in_shape

    def part(self, part: str, latency: bool = True) -> Cost:
        """One part's cost; its latency (``nan`` unless asked for) is only timed when a budget needs it."""
        lat_key, mac_key, par_key = self._keys(part)
        need = (latency and lat_key not in self.data["latency_ms"], mac_key not in self.data["macs"],
                par_key not in self.data["params"])
        if any(need):
            module, shape = self._module(part)
            module = module.to(self.runtime.device).eval()
            if need[0]:
                x = torch.randn(*shape, device=self.runtime.device)
                if self.runtime.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                    module = module.to(memory_format=torch.channels_last)
                self.data["latency_ms"][lat_key] = time_forward(module, x, self.runtime, self.warmup, self.runs)
                self.measured += 1
            if need[1]:
                self.data["macs"][mac_key] = count_macs(module, torch.zeros(*shape, device=self.runtime.device))
            if need[2]:
                self.data["params"][par_key] = sum(p.numel() for p in module.parameters())
        return Cost(self.data["latency_ms"].get(lat_key, float("nan")) if latency else float("nan"),
                    self.data["macs"][mac_key], int(self.data["params"][par_key]))

    def predict(self, settings: SubnetSettings, latency: bool = True) -> Cost:
        costs = [self.part(p, latency) for p in self.parts(settings)]
        return Cost(sum(c.latency_ms for c in costs), sum(c.macs for c in costs), sum(c.params for c in costs))

    def save(self) -> None:
        if self.path is None:
            return
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))
