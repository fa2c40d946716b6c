"""The smallest accuracy gain the leaderboard's paired test can detect (power analysis of McNemar's exact test).

A gain of +1 pp on 240 test images says nothing if the test could not have
told a true +5 pp from zero. This module answers: *given* the test-set size
and how often the two models disagree, what is the smallest true accuracy
difference the page's test finds with 80% probability?

Formulation (the test the leaderboard runs, :func:`medkd_bench.evaluate.stats.mcnemar`:
two-sided exact conditional McNemar test, scipy ``binomtest(b, b + c, 0.5)``):

* each of ``n`` test images is, independently, right for model A only
  (probability ``p10``), for model B only (``p01``), or concordant;
  the discordance rate is ``psi = p10 + p01`` and the true accuracy
  difference is ``delta = p10 - p01`` (so ``|delta| <= psi``);
* the number of discordant images is ``D ~ Binomial(n, psi)``; given ``D``,
  the images A alone gets right are ``b ~ Binomial(D, (1 + delta / psi) / 2)``;
* the test rejects at level ``alpha`` when its p-value
  ``min(1, 2 * P(Binomial(D, 1/2) <= min(b, D - b)))`` is at most ``alpha``,
  i.e. when ``min(b, D - b) <= k_D`` for a critical value ``k_D`` per ``D``;
* power = ``sum_D P(D) * P(b <= k_D or b >= D - k_D | D)``, exact, summed
  over every ``D`` with non-negligible probability in one numpy pass.

Power rises with ``delta`` at fixed ``psi`` (the binomial's tail beyond a
symmetric critical region grows as its success probability moves from 1/2),
so the minimum detectable difference is found by bisection on
``(0, psi]``. When even ``delta = psi`` (every discordant image going A's
way) does not reach the target power, no gain is detectable at that
discordance and the functions return ``None``.

For comparison, :func:`connor_detectable_difference` inverts the normal
approximation of Connor (1987), "Sample size for testing differences in
proportions for the paired-sample design", Biometrics 43:207-211:
``n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2``.
It agrees with the exact figure for large ``n`` and is optimistic for small
``n``, where the exact test's discreteness costs power.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import optimize
from scipy.stats import binom, nct, norm
from scipy.stats import t as t_dist

#: The leaderboard's conventions: 80% power for a two-sided test at 5%.
POWER = 0.8
ALPHA = 0.05
#: Bisection stops when the bracket on delta is this narrow (a thousandth of a percentage point).
TOLERANCE = 1e-5
#: Numbers of discordant images with less probability than this (in both tails together) are left out of the sum.
TAIL = 1e-12


def critical_values(d: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``k_D`` per number of discordant images ``D``: the test rejects iff ``min(b, D - b) <= k_D`` (-1: never).

    ``k_D`` is the largest ``k`` with ``2 * P(Binomial(D, 1/2) <= k) <= alpha``,
    the exact two-sided binomial test's rejection region (symmetric because
    the null success probability is 1/2, so scipy's two-sided p-value is twice
    the smaller tail).
    """
    d = np.asarray(d, dtype=np.int64)
    k = binom.ppf(alpha / 2, d, 0.5).astype(np.int64)  # smallest k with cdf(k) >= alpha / 2
    # A relative tolerance as scipy's binomtest uses, so a tail that equals alpha / 2 counts as rejecting.
    k = np.where(binom.cdf(k, d, 0.5) <= alpha / 2 * (1 + 1e-7), k, k - 1)
    return np.minimum(k, (d - 1) // 2)


def exact_mcnemar_power(n: int, discordance: float, delta: float, alpha: float = ALPHA) -> float:
    """Probability that the exact two-sided McNemar test rejects at ``alpha`` (see the module docstring).

    ``n`` test images, true discordance rate ``discordance`` and true accuracy
    difference ``delta`` (``|delta| <= discordance``).
    """
    if not 0 < discordance <= 1:
        return 0.0
    if abs(delta) > discordance * (1 + 1e-12):
        raise ValueError(f"an accuracy difference of {delta} needs at least as many discordant images "
                         f"({discordance})")
    d = _support(n, discordance)
    k = critical_values(d, alpha)
    q = min(1.0, max(0.0, (1 + delta / discordance) / 2))
    given_d = binom.cdf(k, d, q) + binom.sf(d - k - 1, d, q)  # P(b <= k) + P(b >= D - k); both 0 when k = -1
    return float(np.sum(binom.pmf(d, n, discordance) * np.where(k >= 0, given_d, 0.0)))


def _support(n: int, discordance: float) -> np.ndarray:
    """The numbers of discordant images ``D`` that carry all but ``TAIL`` of ``Binomial(n, discordance)``."""
    lo = int(binom.ppf(TAIL / 2, n, discordance))
    hi = int(binom.isf(TAIL / 2, n, discordance))
    return np.arange(max(0, lo - 1), min(n, hi + 1) + 1)


@lru_cache(maxsize=4096)
def detectable_difference(n: int, discordance: float, power: float = POWER, alpha: float = ALPHA) -> float | None:
    """Smallest true accuracy difference the exact McNemar test detects with probability ``power``.

    ``n``: test images; ``discordance``: share of them on which the two models
    differ in correctness (``(b + c) / n``). A fraction, like the gains
    (0.05 = 5 pp); ``None`` when no difference up to ``discordance`` itself
    reaches ``power`` (too few discordant images for the test ever to reject
    often enough). Cached: a leaderboard asks for the same few figures often.
    """
    if n < 1 or not 0 < discordance <= 1:
        return None
    if exact_mcnemar_power(n, discordance, discordance, alpha) < power:
        return None
    lo, hi = 0.0, float(discordance)
    while hi - lo > TOLERANCE:
        mid = (lo + hi) / 2
        if exact_mcnemar_power(n, discordance, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def connor_detectable_difference(n: int, discordance: float, power: float = POWER,
                                 alpha: float = ALPHA) -> float | None:
    """The same figure from Connor's (1987) normal approximation (for comparison; see the module docstring)."""
    if n < 1 or not 0 < discordance <= 1:
        return None
    z_alpha, z_power = norm.isf(alpha / 2), norm.ppf(power)

    def excess(delta: float) -> float:  # sqrt(n) * delta minus what Connor's formula needs: rises with delta
        return float(np.sqrt(n) * delta - z_alpha * np.sqrt(discordance)
                     - z_power * np.sqrt(max(0.0, discordance - delta ** 2)))

    if excess(discordance) < 0:
        return None
    return float(optimize.brentq(excess, 1e-12, discordance, xtol=TOLERANCE / 10))


def t_detectable_difference(se: float, df: float, power: float = POWER, alpha: float = ALPHA) -> float | None:
    """Smallest true difference a two-sided t test with standard error ``se`` and ``df`` degrees of freedom
    detects with probability ``power`` (the seed-aware gain interval's test,
    :func:`medkd_bench.evaluate.stats.seed_and_image_interval`).

    Exact under the t test's model: the statistic is noncentral t with
    noncentrality ``delta / se``, and power is the probability of its landing
    beyond either critical value (scipy ``nct``; the normal for infinite
    ``df``). Power rises with ``delta``, so brentq inverts it. ``None`` when
    ``se`` is 0 or not finite (nothing to detect against).
    """
    if not (np.isfinite(se) and se > 0) or not df > 0:
        return None
    crit = float(t_dist.ppf(1 - alpha / 2, df))

    def shortfall(delta: float) -> float:
        ncp = delta / se
        if np.isinf(df):
            reach = norm.sf(crit - ncp) + norm.cdf(-crit - ncp)
        else:
            # The far lower tail: negligible for delta >= 0, and scipy's nct gives NaN there at large ncp.
            reach = nct.sf(crit, df, ncp) + np.nan_to_num(nct.cdf(-crit, df, ncp), nan=0.0)
        return float(reach) - power

    hi = se
    while shortfall(hi) < 0:
        hi *= 2
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=TOLERANCE / 10))


def discordance_rate(mcnemar: list[dict[str, int]], n: int) -> float | None:
    """Share of discordant images pooled over McNemar results (``b``, ``c``) on ``n`` images each (seeds)."""
    if not mcnemar or n < 1:
        return None
    return sum(m["b"] + m["c"] for m in mcnemar) / (n * len(mcnemar))
