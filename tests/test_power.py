"""The minimum detectable gain: exact McNemar power against a simulation of the test itself, and against Connor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import binomtest

from medkd_bench.evaluate import power, stats


def simulated_power(n: int, discordance: float, delta: float, draws: int = 20000, seed: int = 0) -> float:
    """Share of simulated test sets on which scipy's exact McNemar test (the page's) rejects at 0.05.

    Each image is independently right for A only, for B only, or concordant;
    the p-value is the leaderboard's own :func:`stats.mcnemar` arithmetic
    (``binomtest``), memoised per ``(b, c)``: independent of the module under test.
    """
    rng = np.random.default_rng(seed)
    p10, p01 = (discordance + delta) / 2, (discordance - delta) / 2
    counts = rng.multinomial(n, [p10, p01, 1 - discordance], size=draws)
    p_values: dict[tuple[int, int], float] = {}
    rejected = 0
    for b, c, _ in counts:
        key = (int(b), int(c))
        if key not in p_values:
            p_values[key] = 1.0 if b + c == 0 else binomtest(key[0], key[0] + key[1], 0.5).pvalue
        rejected += p_values[key] <= 0.05
    return rejected / draws


@pytest.mark.parametrize(("n", "discordance"), [(240, 0.2), (120, 0.35)])
def test_detectable_gain_has_80_percent_power_by_simulation(n, discordance):
    delta = power.detectable_difference(n, discordance)
    assert delta is not None and 0 < delta < discordance
    assert power.exact_mcnemar_power(n, discordance, delta) == pytest.approx(0.8, abs=1e-3)
    assert simulated_power(n, discordance, delta) == pytest.approx(0.8, abs=0.02)
    assert simulated_power(n, discordance, 0.8 * delta, seed=1) < 0.72  # clearly below: the figure is the smallest


def test_exact_power_matches_simulation_away_from_the_answer():
    """The power function itself, at a gain the bisection never settles on, and at no gain (the test's size)."""
    assert power.exact_mcnemar_power(300, 0.25, 0.05) == pytest.approx(simulated_power(300, 0.25, 0.05), abs=0.015)
    size = power.exact_mcnemar_power(300, 0.25, 0.0)
    assert 0.02 < size <= 0.05  # exact and conservative: never above alpha


def test_critical_values_are_where_the_pages_mcnemar_test_rejects():
    for d in range(1, 80):
        k = int(power.critical_values(np.array([d]))[0])
        rejects = [b for b in range(d + 1)
                   if stats.mcnemar([True] * b + [False] * (d - b), [False] * b + [True] * (d - b))["p_exact"] <= 0.05]
        assert rejects == [b for b in range(d + 1) if min(b, d - b) <= k]


def test_close_to_connors_normal_approximation_for_large_n():
    exact = power.detectable_difference(4000, 0.2)
    connor = power.connor_detectable_difference(4000, 0.2)
    assert exact is not None and connor is not None
    assert exact == pytest.approx(connor, rel=0.03)
    # The approximation ignores the exact test's discreteness: optimistic on a small test set.
    small_exact, small_connor = power.detectable_difference(60, 0.3), power.connor_detectable_difference(60, 0.3)
    assert small_exact is not None and small_connor is not None and small_exact > small_connor


def test_no_detectable_gain_with_too_few_discordant_images():
    assert power.detectable_difference(30, 0.1) is None  # 3 discordant images: the test can hardly ever reject
    assert power.detectable_difference(240, 0.0) is None
    assert power.discordance_rate([{"b": 10, "c": 14}, {"b": 6, "c": 0}], 100) == pytest.approx(0.15)


@pytest.mark.parametrize("df", [1.2, 2.0, 3.4, 30.0])  # 1.2: two seeds, where scipy's nct lower tail is NaN
def test_seed_aware_detectable_gain_has_80_percent_power_by_simulation(df):
    """The t test over seeds: a mean gain with estimated SE (chi-squared with ``df``) rejects 80% of the time."""
    se = 0.02
    delta = power.t_detectable_difference(se, df)
    rng = np.random.default_rng(1)
    z, chi2 = rng.standard_normal(200_000), rng.chisquare(df, 200_000)
    t_stat = (delta / se + z) / np.sqrt(chi2 / df)
    assert np.mean(np.abs(t_stat) > sps.t.ppf(0.975, df)) == pytest.approx(0.8, abs=0.005)


def test_seed_aware_detectable_gain_tends_to_the_normal_formula_and_grows_with_few_seeds():
    se = 0.01
    assert power.t_detectable_difference(se, math.inf) == pytest.approx((1.959964 + 0.841621) * se, rel=1e-4)
    assert power.t_detectable_difference(se, 2.0) > 1.9 * power.t_detectable_difference(se, math.inf)
    assert power.t_detectable_difference(0.0, 2.0) is None
