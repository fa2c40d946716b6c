"""Hardware-aware students: search the once-for-all MobileNetV3 supernet for this machine.

OFA-595 was picked for a 595M-MAC budget at ImageNet resolution; a clinic's
machine and our image sizes differ. This module finds a subnet of the same
supernet (``OFAMobileNetV3``, kernel 3/5/7, expand 3/4/6, depth 2/3/4 per
stage) that fits a budget measured here, and saves it as a *student spec
file* that the built-in ``ofa-search`` student plugin turns into a student.

How the budget is met (the OFA paper's recipe, Cai et al. 2020, Sec. 3.3):

* **Latency**: a lookup table holds the batch-1 latency of every part the
  subnets are made of (stem, head, and each elastic block at each kernel size
  and expand ratio), timed on this machine the way the leaderboard times whole
  models (``torch.inference_mode``, warm-up, median of repeats). A subnet's
  latency is predicted as the sum of its parts. The table is JSON under the
  work dir, keyed by machine description, device, precision and image size, so
  a second search on the same machine times nothing new. The pick is then
  measured directly; if the sum under-predicted, the prediction is rescaled by
  the observed ratio and the search repeats (at most a few rounds).
* **GMACs**: fvcore counts each part once (also cached); a subnet's MACs are
  the exact sum, re-counted on the whole model at the end.

What is maximised: without the pretrained supernet's accuracy (OFA ranks
subnets with an accuracy predictor trained on ImageNet evaluations of the
trained supernet, which medkd-bench never downloads), the search maximises
*capacity*: MACs first, then parameters, within the budget. On ImageNet, OFA
subnet accuracy rises with MACs, but for a small medical dataset trained from
scratch at 64 px a bigger subnet is not guaranteed to be better; the search
answers "the biggest student this machine can afford", not "the most accurate".
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import statistics
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import MedkdError
from .evaluate import timed_runs_ms
from .runtime import Runtime, machine_description

KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (3, 4, 6)
DEPTHS = (2, 3, 4)
N_STAGES = 5
BLOCKS_PER_STAGE = max(DEPTHS)
N_BLOCKS = N_STAGES * BLOCKS_PER_STAGE
WIDTH_MULTS = (1.0, 1.2)
SPEC_FORMAT = "medkd-bench/ofa-student"
SPEC_VERSION = 1
LUT_FILE = "ofa_cost_lut.json"
#: Environment variable listing spec files or folders of them (``os.pathsep``-separated).
STUDENTS_ENV = "MEDKD_STUDENTS"
#: Where spec files are written and, when the variable is unset, read: ``<default work dir>/students``.
DEFAULT_STUDENTS_DIR = Path(".medkd") / "students"
OBJECTIVE = ("capacity proxy: maximise MACs, then parameters, within the budget "
             "(no pretrained supernet accuracy is available offline)")
#: The conformance kit's plugin-name rule (``medkd_bench.testing.NAME_PATTERN``): dash-separated slugs.
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


# ---- subnet settings and building ------------------------------------------------------------

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
    from .weights import apply_state_dict, read_state_dict

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


# ---- per-part costs: the lookup table ----------------------------------------------------------

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


# ---- the search ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """Either a latency budget (ms, on this machine) or a MACs budget (GMACs)."""

    kind: str  # "latency_ms" | "gmacs"
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("latency_ms", "gmacs"):
            raise MedkdError(f"budget kind {self.kind!r}: expected latency_ms or gmacs")
        if not self.value > 0:
            raise MedkdError(f"--{'latency-ms' if self.kind == 'latency_ms' else 'gmacs'} must be positive")

    @property
    def option(self) -> str:
        return "--latency-ms" if self.kind == "latency_ms" else "--gmacs"

    def of(self, cost: Cost, latency_scale: float = 1.0) -> float:
        return cost.latency_ms * latency_scale if self.kind == "latency_ms" else cost.gmacs

    def text(self) -> str:
        return f"{self.value:g} ms" if self.kind == "latency_ms" else f"{self.value:g} GMACs"


@dataclass
class SearchSettings:
    population: int = 100
    generations: int = 30
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    seed: int = 0
    #: Timed runs (median, after warm-up) per part of the lookup table and per verified pick.
    verify_runs: int = 20
    #: Rounds of "measure the pick, rescale the prediction, search again".
    max_rounds: int = 4


@dataclass
class SearchResult:
    settings: SubnetSettings
    budget: Budget
    img_size: int
    num_classes: int
    predicted: Cost
    latency_ms: float
    latency_iqr_ms: float
    gmacs: float
    params_m: float
    machine: str
    device: str
    #: Subnets priced from the lookup table (all rounds).
    evaluated: int
    #: Parts timed by this search (0 when the table already held every part it met).
    parts_timed: int
    rounds: int
    latency_scale: float
    search: SearchSettings = field(default_factory=SearchSettings)

    def within_budget(self) -> bool:
        return (self.latency_ms if self.budget.kind == "latency_ms" else self.gmacs) <= self.budget.value


def _score(cost: Cost) -> tuple[float, int]:
    return (cost.macs, cost.params)


class _Evolution:
    """OFA's evolutionary finder (random feasible population, keep the best quarter,
    refill with mutations and crossovers), scoring by capacity instead of predicted accuracy."""

    def __init__(self, table: CostTable, budget: Budget, scale: float, opts: SearchSettings, width_mult: float):
        self.table, self.budget, self.scale, self.opts = table, budget, scale, opts
        self.width_mult = width_mult
        self.rng = random.Random(opts.seed)
        self.seen: dict[SubnetSettings, Cost] = {}

    def cost(self, s: SubnetSettings) -> Cost:
        if s not in self.seen:
            self.seen[s] = self.table.predict(s, latency=self.budget.kind == "latency_ms")
        return self.seen[s]

    def feasible(self, s: SubnetSettings) -> bool:
        return self.budget.of(self.cost(s), self.scale) <= self.budget.value

    def random_settings(self) -> SubnetSettings:
        r = self.rng
        return SubnetSettings(tuple(r.choice(KERNEL_SIZES) for _ in range(N_BLOCKS)),
                              tuple(r.choice(EXPAND_RATIOS) for _ in range(N_BLOCKS)),
                              tuple(r.choice(DEPTHS) for _ in range(N_STAGES)), self.width_mult).canonical()

    def mutate(self, s: SubnetSettings) -> SubnetSettings:
        r, p = self.rng, self.opts.mutate_prob
        ks = tuple(r.choice(KERNEL_SIZES) if r.random() < p else k for k in s.ks)
        e = tuple(r.choice(EXPAND_RATIOS) if r.random() < p else x for x in s.e)
        d = tuple(r.choice(DEPTHS) if r.random() < p else x for x in s.d)
        return SubnetSettings(ks, e, d, self.width_mult).canonical()

    def crossover(self, a: SubnetSettings, b: SubnetSettings) -> SubnetSettings:
        def pick(x: int, y: int) -> int:
            return self.rng.choice((x, y))

        return SubnetSettings(tuple(map(pick, a.ks, b.ks)), tuple(map(pick, a.e, b.e)),
                              tuple(map(pick, a.d, b.d)), self.width_mult).canonical()

    def _feasible_child(self, make: Callable[[], SubnetSettings], tries: int = 50) -> SubnetSettings | None:
        for _ in range(tries):
            child = make()
            if self.feasible(child):
                return child
        return None

    def run(self) -> list[SubnetSettings]:
        """Every feasible subnet seen, best first."""
        opts = self.opts
        population: list[SubnetSettings] = []
        largest = SubnetSettings(LARGEST.ks, LARGEST.e, LARGEST.d, self.width_mult)
        if self.feasible(largest):  # a loose budget's answer is the whole supernet: no need to stumble on it
            population.append(largest)
        for _ in range(opts.population * 20):
            if len(population) >= opts.population:
                break
            s = self.random_settings()
            if self.feasible(s):
                population.append(s)
        if not population:  # tight budget: grow from the smallest subnet instead of sampling blindly
            population = [SubnetSettings(SMALLEST.ks, SMALLEST.e, SMALLEST.d, self.width_mult)]
            self.cost(population[0])
        n_parents = max(1, int(round(opts.population * opts.parent_ratio)))
        n_mutations = int(round(opts.population * opts.mutation_ratio))
        for _ in range(opts.generations):
            parents = sorted(set(population), key=lambda s: _score(self.cost(s)), reverse=True)[:n_parents]
            population = list(parents)
            for _ in range(n_mutations):
                child = self._feasible_child(lambda ps=parents: self.mutate(self.rng.choice(ps)))
                if child is not None:
                    population.append(child)
            while len(population) < opts.population:
                child = self._feasible_child(lambda ps=parents: self.crossover(self.rng.choice(ps),
                                                                             self.rng.choice(ps)))
                if child is None:
                    break
                population.append(child)
        return sorted((s for s in self.seen if self.feasible(s)), key=lambda s: _score(self.cost(s)), reverse=True)


def _measure(settings: SubnetSettings, img_size: int, num_classes: int, runtime: Runtime,
             runs: int) -> dict[str, float]:
    """The whole subnet, measured as the leaderboard measures every model."""
    from .evaluate import count_gmacs, count_params, measure_latency

    model = build_subnet(settings, num_classes).to(runtime.device).eval()
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = {"gmacs": count_gmacs(model, img_size, runtime.device), "params_m": count_params(model) / 1e6}
    out.update(measure_latency(model, img_size, runtime, warmup=5, runs=runs))
    return out


def search(budget: Budget, runtime: Runtime, img_size: int = 64, num_classes: int = 3, width_mult: float = 1.2,
           lut_path: Path | None = None, opts: SearchSettings | None = None,
           log: Callable[[str], None] = lambda _msg: None) -> SearchResult:
    """Find the highest-capacity subnet whose measured cost on ``runtime`` fits ``budget``."""
    opts = opts or SearchSettings()
    if img_size < 32:
        raise MedkdError(f"--img-size {img_size}: the supernet downsamples 32x; use at least 32")
    if width_mult not in WIDTH_MULTS:
        raise MedkdError(f"--width-mult {width_mult}: expected one of {', '.join(map(str, WIDTH_MULTS))}")
    if opts.population < 2 or opts.generations < 0:
        raise MedkdError("--population must be at least 2 and --generations at least 0")
    table = CostTable(lut_path, runtime, img_size, width_mult, num_classes, runs=opts.verify_runs)
    try:
        return _search(budget, runtime, img_size, num_classes, width_mult, table, opts, log)
    finally:
        table.save()


def _search(budget: Budget, runtime: Runtime, img_size: int, num_classes: int, width_mult: float,
            table: CostTable, opts: SearchSettings, log: Callable[[str], None]) -> SearchResult:
    smallest = SubnetSettings(SMALLEST.ks, SMALLEST.e, SMALLEST.d, width_mult)
    small = _measure(smallest, img_size, num_classes, runtime, opts.verify_runs)
    if (small["latency_ms"] if budget.kind == "latency_ms" else small["gmacs"]) > budget.value:
        measured = f"{small['latency_ms']:.2f} ms" if budget.kind == "latency_ms" else f"{small['gmacs']:.4f} GMACs"
        raise MedkdError(f"{budget.option} {budget.value:g}: even the smallest subnet (kernel 3, expand 3, depth 2) "
                         f"measures {measured} at {img_size} px on {table.machine}; raise the budget")
    # Calibrate the sum-of-parts prediction on the smallest subnet's whole-model measurement.
    scale = 1.0
    if budget.kind == "latency_ms":
        predicted_small = table.predict(smallest).latency_ms
        scale = max(1.0, small["latency_ms"] / predicted_small)
    evaluated = 0
    for round_no in range(1, opts.max_rounds + 1):
        evolution = _Evolution(table, budget, scale, opts, width_mult)
        ranked = evolution.run()
        evaluated += len(evolution.seen)
        if not ranked:
            ranked = [smallest]
        best = ranked[0]
        predicted = table.predict(best, latency=budget.kind == "latency_ms")
        # The smallest subnet was measured (and fit) above; timing it again would only add noise.
        measured = small if best == smallest else _measure(best, img_size, num_classes, runtime,
                                                           opts.verify_runs)
        value = measured["latency_ms"] if budget.kind == "latency_ms" else measured["gmacs"]
        log(f"round {round_no}: predicted {budget.of(predicted, scale):.4g}, measured {value:.4g} "
            f"(budget {budget.value:g}); {table.measured} parts timed so far")
        if value <= budget.value:
            return SearchResult(best, budget, img_size, num_classes, predicted, measured["latency_ms"],
                                measured["latency_iqr_ms"], measured["gmacs"], measured["params_m"],
                                table.machine, runtime.device.type, evaluated, table.measured, round_no, scale,
                                opts)
        if budget.kind == "gmacs":  # fvcore's sum of parts should be exact; never loop on a mismatch
            raise MedkdError(f"--gmacs: the sum of parts ({predicted.gmacs:.4f}) disagrees with the whole model "
                             f"({measured['gmacs']:.4f}); please report this")
        scale = max(scale * 1.02, measured["latency_ms"] / predicted.latency_ms)
    raise MedkdError(f"{budget.option} {budget.value:g}: no subnet met the budget when measured after "
                     f"{opts.max_rounds} rounds (timings too noisy on {table.machine}?); raise the budget "
                     "or the repeats")


# ---- student spec files ------------------------------------------------------------------------------

def default_name(budget: Budget, device: str) -> str:
    """``ofa-cpu-8ms``, ``ofa-cuda-2p5ms`` or ``ofa-50mmacs`` (MACs do not depend on the device)."""
    if budget.kind == "latency_ms":
        return f"ofa-{device}-{budget.value:g}ms".replace(".", "p")
    return f"ofa-{budget.value * 1000:g}mmacs".replace(".", "p")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise MedkdError(f"--name {name!r}: use dash-separated lower-case words of letters and digits, "
                         "starting with a letter (it becomes a student name and a file name)")
    return name


def spec_document(result: SearchResult, name: str, supernet_weights: Path | None = None) -> dict[str, Any]:
    """The JSON a student spec file holds; :func:`read_searched_student` reads it back."""
    from .weights import file_digest

    weights = None
    if supernet_weights is not None:
        weights = {"path": str(Path(supernet_weights).resolve()), "sha256_16": file_digest(supernet_weights)}
    return {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "name": name,
        "subnet": result.settings.as_json(),
        "supernet": {"ks_list": list(KERNEL_SIZES), "expand_ratio_list": list(EXPAND_RATIOS),
                     "depth_list": list(DEPTHS), "width_mult": result.settings.width_mult},
        "supernet_weights": weights,
        "budget": {"kind": result.budget.kind, "value": result.budget.value},
        "measured": {"latency_ms": result.latency_ms, "latency_iqr_ms": result.latency_iqr_ms,
                     "gmacs": result.gmacs, "params_m": result.params_m, "num_classes": result.num_classes},
        "predicted": {"latency_ms": result.predicted.latency_ms * result.latency_scale,
                      "latency_sum_of_parts_ms": result.predicted.latency_ms, "gmacs": result.predicted.gmacs},
        "img_size": result.img_size,
        "device": result.device,
        "machine": result.machine,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "search": {"method": "evolutionary (OFA EvolutionFinder) over a per-part cost lookup table",
                   "objective": OBJECTIVE, "population": result.search.population,
                   "generations": result.search.generations, "seed": result.search.seed,
                   "subnets_evaluated": result.evaluated, "rounds": result.rounds},
    }


def write_spec(document: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class SearchedStudent:
    """A student spec file, read and checked: what the ``ofa-search`` plugin registers."""

    path: Path
    name: str
    settings: SubnetSettings
    budget: Budget
    img_size: int
    device: str
    machine: str
    measured: dict[str, float]
    created: str
    weights_path: Path | None = None
    weights_digest: str | None = None

    @property
    def revision(self) -> str:
        """Changes when the model the file describes changes, and so does every cell hash using it."""
        return f"{self.settings.digest()}{'-' + self.weights_digest if self.weights_digest else ''}"

    def describe(self) -> str:
        m = self.measured
        return (f"OFA MobileNetV3 subnet searched for {self.budget.text()} at {self.img_size} px on {self.machine} "
                f"({self.created}): measured {m.get('latency_ms', float('nan')):.2f} ms, "
                f"{m.get('gmacs', float('nan')):.4f} GMACs, {m.get('params_m', float('nan')):.2f}M params "
                f"with {int(m.get('num_classes', 3))} classes; depths {list(self.settings.d)}"
                f"{'; from local supernet weights' if self.weights_path else ''}. Spec file {self.path.name}.")

    def build(self, num_classes: int, img_size: int) -> nn.Module:
        """The subnet (resolution is elastic, so any ``img_size`` builds; the budget held at the searched one)."""
        weights = None
        if self.weights_path is not None:
            from .weights import file_digest

            if not self.weights_path.is_file():
                raise MedkdError(f"student spec file {self.path}: supernet weights {self.weights_path} are missing")
            if file_digest(self.weights_path) != self.weights_digest:
                raise MedkdError(f"student spec file {self.path}: supernet weights {self.weights_path} changed "
                                 "since the search; search again")
            weights = self.weights_path
        return build_subnet(self.settings, num_classes, weights)


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MedkdError(f"student spec file {path}: missing or malformed {key!r}")
    return value


def read_searched_student(path: Path) -> SearchedStudent:
    """Parse and check a spec file; any problem is one MedkdError naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise MedkdError(f"student spec file {path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise MedkdError(f"student spec file {path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
        raise MedkdError(f"student spec file {path}: not a medkd-bench OFA student (format must be {SPEC_FORMAT!r})")
    if doc.get("version") != SPEC_VERSION:
        raise MedkdError(f"student spec file {path}: version {doc.get('version')!r} not supported "
                         f"(expected {SPEC_VERSION})")
    name = _require(doc, "name", str, path)
    if not _NAME.match(name):
        raise MedkdError(f"student spec file {path}: name {name!r} is not a valid student name")
    sub = _require(doc, "subnet", dict, path)
    try:
        settings = SubnetSettings(tuple(sub["ks"]), tuple(sub["e"]), tuple(sub["d"]), float(sub["width_mult"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MedkdError(f"student spec file {path}: subnet needs ks, e, d lists and width_mult ({exc})") from exc
    if settings.problems():
        raise MedkdError(f"student spec file {path}: subnet {'; '.join(settings.problems())}")
    b = _require(doc, "budget", dict, path)
    try:
        budget = Budget(str(b["kind"]), float(b["value"]))
    except (KeyError, TypeError, ValueError, MedkdError) as exc:
        raise MedkdError(f"student spec file {path}: budget needs kind latency_ms|gmacs and a positive value") from exc
    img_size = _require(doc, "img_size", int, path)
    measured = _require(doc, "measured", dict, path)
    weights = doc.get("supernet_weights")
    weights_path = weights_digest = None
    if weights is not None:
        if not (isinstance(weights, dict) and isinstance(weights.get("path"), str)
                and isinstance(weights.get("sha256_16"), str)):
            raise MedkdError(f"student spec file {path}: supernet_weights needs path and sha256_16")
        weights_path, weights_digest = Path(weights["path"]), weights["sha256_16"]
    return SearchedStudent(path, name, settings.canonical(), budget, img_size, str(doc.get("device", "?")),
                           str(doc.get("machine", "unrecorded machine")),
                           {k: float(v) for k, v in measured.items() if isinstance(v, int | float)},
                           str(doc.get("created", "?")), weights_path, weights_digest)


def searched_student_files() -> list[Path]:
    """Spec files to register: ``$MEDKD_STUDENTS`` (files or folders), else ``.medkd/students/*.json``.

    An empty ``MEDKD_STUDENTS`` registers none (tests use that to stay independent of the checkout).
    """
    env = os.environ.get(STUDENTS_ENV)
    entries = [Path(p) for p in env.split(os.pathsep) if p] if env is not None else [DEFAULT_STUDENTS_DIR]
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            files += sorted(entry.glob("*.json"))
        elif entry.is_file():
            files.append(entry)
        elif env is not None:
            raise MedkdError(f"{STUDENTS_ENV} entry {entry}: no such file or folder")
    return list(dict.fromkeys(files))


def iter_searched_students() -> Iterator[SearchedStudent]:
    """Every discovered spec file, read; two files with one name is an error naming both."""
    seen: dict[str, Path] = {}
    for path in searched_student_files():
        student = read_searched_student(path)
        if student.name in seen:
            raise MedkdError(f"student spec files {seen[student.name]} and {path} both name {student.name!r}")
        seen[student.name] = path
        yield student
