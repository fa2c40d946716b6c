"""The evolutionary search for the biggest subnet within a latency or MACs budget.

Without the pretrained supernet's accuracy predictor (which medkd-bench never
downloads), the search maximises *capacity*: MACs first, then parameters,
within the budget. The pick is then timed as a whole; if the table
under-predicted, the prediction is rescaled by the observed ratio and the
search repeats (at most a few rounds). On a small medical dataset trained
from scratch, bigger is not guaranteed to be better: the search answers "the
biggest student this machine can afford", not "the most accurate".
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medkd_bench.errors import MedkdError
from medkd_bench.nas.cost_table import Cost, CostTable
from medkd_bench.nas.space import (
    DEPTHS,
    EXPAND_RATIOS,
    KERNEL_SIZES,
    LARGEST,
    N_BLOCKS,
    N_STAGES,
    SMALLEST,
    WIDTH_MULTS,
    SubnetSettings,
    build_subnet,
)
from medkd_bench.runtime.device import Runtime

OBJECTIVE = ("capacity proxy: maximise MACs, then parameters, within the budget "
             "(no pretrained supernet accuracy is available offline)")


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
    from medkd_bench.evaluate.cost import count_gmacs, count_params, measure_latency

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
