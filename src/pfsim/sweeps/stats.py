"""Mean and 95 % confidence interval over a group's seeds (Student's t).

The interval is mean ± t(0.975, n-1) · s / √n with s the sample standard deviation: the
replicates of a group are independent runs (different seeds), and for the means of counts over
thousands of events the t interval is the textbook choice.  The t quantile is computed here
from the exact distribution function for integer degrees of freedom (Abramowitz and Stegun
26.7.3 and 26.7.4) and inverted by bisection, rather than adding a statistics library for one
number.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def t_cdf(t: float, nu: int) -> float:
    """P(T <= t) for Student's t with ``nu`` degrees of freedom (an integer >= 1)."""
    theta = math.atan(t / math.sqrt(nu))
    c2 = math.cos(theta) ** 2
    total, term = 1.0, 1.0
    if nu % 2 == 1:
        if nu == 1:
            return 0.5 + theta / math.pi
        for k in range(1, (nu - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 0.5 + (theta + math.sin(theta) * math.cos(theta) * total) / math.pi
    for k in range(1, (nu - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return 0.5 + 0.5 * math.sin(theta) * total


def t_quantile(p: float, nu: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``nu`` degrees of freedom."""
    if not 0.5 < p < 1 or nu < 1:
        raise ValueError("t_quantile needs 0.5 < p < 1 and nu >= 1")
    if nu > 2000:  # Cornish-Fisher expansion (A&S 26.7.5): error far below 1e-9 here
        z = NormalDist().inv_cdf(p)
        return (z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)
                + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3))
    low, high = 0.0, 1.0
    while t_cdf(high, nu) < p:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, nu) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % interval); the half-width is NaN below two values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t_quantile(0.975, n - 1) * math.sqrt(variance / n)
