"""Latency histograms with logarithmic buckets (HdrHistogram's layout), shared by both engines.

A value ``v`` (ns, >= 0) falls in bucket :func:`bucket_of`: values below ``2**SUB_BITS`` have
a bucket each; above, every power of two ``[2**k, 2**(k+1))`` is cut into ``2**(SUB_BITS-1)``
equal buckets, so a bucket is at most 1/16 of its values wide (with SUB_BITS = 5) whatever
their size: 0-31 ns exactly, 32-63 ns in steps of 2, 64-127 in steps of 4, ..., 992-1023 ns
in one bucket of 32.  That is HdrHistogram's bucket/sub-bucket index
(``getBucketIndex``/``getSubBucketIndex`` with a sub-bucket count of ``2**SUB_BITS``),
flattened into one counts array.

result.json keeps a histogram sparsely: ``count``, ``sum_ns``, ``min_ns``, ``max_ns`` and
``buckets``, a list of ``[low_ns, count]`` for the buckets that are not empty (``low_ns`` the
smallest value of the bucket; the bucket holds values up to :func:`bucket_high`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

SUB_BITS = 5
HALF = 1 << (SUB_BITS - 1)
NBUCKETS = (63 - SUB_BITS + 2) * HALF + HALF
"""Enough buckets for every non-negative int64."""

# the rows of a histogram array [HIST_ROWS + NBUCKETS]: totals first, then the buckets
H_COUNT, H_SUM, H_MIN, H_MAX = 0, 1, 2, 3
HIST_ROWS = 4
KINDS = ("minor", "major", "async")
"""The histograms of a run: minor faults, major faults, async-PF round trips (a task put to
sleep by a page-not-present / initial interrupt until the page-ready / completion wakes it)."""
MINOR, MAJOR, ASYNC = 0, 1, 2


@njit(cache=True, nogil=True)
def bucket_of(v: int) -> int:
    """Bucket index of the value ``v`` >= 0."""
    if v < (1 << SUB_BITS):
        return v
    msb = 63
    while (v >> msb) == 0:
        msb -= 1
    shift = msb - (SUB_BITS - 1)
    return shift * HALF + (v >> shift)


def bucket_low(index: int) -> int:
    """Smallest value of bucket ``index``."""
    if index < (1 << SUB_BITS):
        return index
    shift = index // HALF - 1
    return (index - shift * HALF) << shift


def bucket_high(index: int) -> int:
    """Largest value of bucket ``index``."""
    if index < (1 << SUB_BITS):
        return index
    return bucket_low(index) + (1 << (index // HALF - 1)) - 1


def new_histograms() -> np.ndarray:
    """Zeroed histograms, one row per kind of :data:`KINDS`."""
    hist = np.zeros((len(KINDS), HIST_ROWS + NBUCKETS), dtype=np.int64)
    hist[:, H_MIN] = -1
    return hist


@njit(cache=True, nogil=True)
def record(hist: np.ndarray, kind: int, v: int) -> None:
    """Add the value ``v`` (ns) to histogram ``kind`` of ``hist``."""
    row = hist[kind]
    row[H_COUNT] += 1
    row[H_SUM] += v
    if row[H_MIN] < 0 or v < row[H_MIN]:
        row[H_MIN] = v
    if v > row[H_MAX]:
        row[H_MAX] = v
    row[HIST_ROWS + bucket_of(v)] += 1


def as_result(hist: np.ndarray) -> dict[str, Any]:
    """The ``latency`` entry of result.json: one sparse histogram per kind."""
    out = {}
    for k, kind in enumerate(KINDS):
        row = hist[k]
        nonzero = np.flatnonzero(row[HIST_ROWS:])
        out[kind] = {"count": int(row[H_COUNT]), "sum_ns": int(row[H_SUM]),
                     "min_ns": max(0, int(row[H_MIN])), "max_ns": int(row[H_MAX]),
                     "buckets": [[bucket_low(int(i)), int(row[HIST_ROWS + i])] for i in nonzero]}
    return out


def cdf_points(hist: dict[str, Any]) -> tuple[list[int], list[float]]:
    """(value, fraction of values at or below it) at the top of each non-empty bucket of a
    result.json histogram (the maximum for the last one), for a step plot of the CDF."""
    total = hist["count"]
    xs, ys, seen = [], [], 0
    buckets = hist["buckets"]
    for n, (low, count) in enumerate(buckets):
        seen += count
        top = bucket_high(bucket_of(low)) if n + 1 < len(buckets) else hist["max_ns"]
        xs.append(max(1, min(top, hist["max_ns"])))
        ys.append(seen / total)
    return xs, ys


def percentile(hist: dict[str, Any], q: float) -> int:
    """The value at or below which a fraction ``q`` of the values lie (a bucket's top: an
    overestimate by at most the bucket width, as HdrHistogram's ``getValueAtPercentile``)."""
    xs, ys = cdf_points(hist)
    for x, y in zip(xs, ys, strict=True):
        if y >= q:
            return x
    return hist["max_ns"]
