"""Miss-ratio curves: LRU's faults at every memory size from one pass over a trace.

Exact: every request goes through :class:`~pfsim.replacement.stack.StackDistances`
(O(log n) per request, memory proportional to the distinct pages).

Sampled (``sample_rate`` R < 1): SHARDS (Waldspurger, Park, Garthwaite and Ahmad, "Efficient MRC
Construction with SHARDS", FAST 2015), fixed-rate: a page is kept when a hash of its number
falls below R * 2**24, so every request to a kept page is kept (spatial sampling) and memory
shrinks with R too. A sampled distance d stands for d / R distinct pages; the curve is corrected
as in SHARDS_adj (the difference between the expected R * N and the actual number of sampled
requests is added to the smallest distances), and the footprint and compulsory misses are the
sampled ones divided by R. Results are then estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pfsim.errors import ConfigError
from pfsim.replacement import PageIds
from pfsim.replacement.stack import StackDistances
from pfsim.trace import DEFAULT_PAGE_SIZE
from pfsim.tracedriven.replay import frame_counts, normalize_options
from pfsim.tracedriven.source import TraceFacts, open_trace

SHARDS_BITS = 24
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)  # murmur3 fmix64


def shards_hash(pages: np.ndarray) -> np.ndarray:
    """A 24-bit hash of each page number (murmur3's 64-bit finaliser, top bits).

    It must differ from the page-id table's Fibonacci hash: sampling by that one would keep
    only pages that crowd the bottom of the table.
    """
    x = pages.astype(np.uint64)
    x ^= x >> np.uint64(33)
    x *= _MIX1
    x ^= x >> np.uint64(33)
    x *= _MIX2
    x ^= x >> np.uint64(33)
    return x >> np.uint64(64 - SHARDS_BITS)


@dataclass
class MissRatioCurve:
    """LRU's miss-ratio curve of a trace; ``rows`` at the requested frame counts."""

    requests: int
    footprint: int
    """Distinct pages (times ``page_size`` bytes): the memory that never faults after warm-up."""
    compulsory_misses: int
    """First requests of a page: faults no policy and no memory size avoids."""
    page_size: int
    sample_rate: float
    trace: TraceFacts
    _histogram: np.ndarray
    _compulsory_sampled: int
    _adjust: float
    rows: list[dict]

    def faults(self, frames) -> np.ndarray:
        """LRU faults (estimated when sampled) at each frame count of ``frames``."""
        frames = np.atleast_1d(np.asarray(frames, dtype=np.int64))
        if np.any(frames < 1):
            raise ConfigError("frames", "frame counts must be positive")
        rate = self.sample_rate
        scaled = np.ceil(frames * rate - 1e-9).astype(np.int64) if rate < 1 else frames
        histogram = self._histogram
        tail = np.concatenate([np.cumsum(histogram[::-1])[::-1], [0]])
        misses = self._compulsory_sampled + tail[np.minimum(scaled, histogram.size)]
        if rate >= 1:
            return misses.astype(np.int64)
        sampled_requests = histogram.sum() + self._compulsory_sampled  # adjusted: R * N
        ratio = np.clip(misses / max(sampled_requests, 1e-9), 0.0, 1.0)
        return np.rint(ratio * self.requests).astype(np.int64)

    def miss_ratio(self, frames) -> np.ndarray:
        """Faults / requests at each frame count of ``frames``."""
        return self.faults(frames) / self.requests

    def curve(self, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        """(frame counts, miss ratios) from 1 frame to the footprint, at most ``points``."""
        top = max(self.footprint, 1)
        frames = np.unique(np.linspace(1, top, num=min(points, top)).astype(np.int64))
        return frames, self.miss_ratio(frames)


def default_frames(footprint: int) -> list[int]:
    """Powers of two below the footprint, then the footprint."""
    counts = [1 << k for k in range(max(footprint, 1).bit_length()) if 1 << k < footprint]
    return counts + [max(footprint, 1)]


def mrc(trace, frames: str | Sequence[int] | None = None, *, sample_rate: float | None = None,
        **reader_options) -> MissRatioCurve:
    """LRU's miss-ratio curve of ``trace`` in one pass (see the module docstring).

    Args:
        trace: a trace file path, ``-``, or an array of page numbers.
        frames: frame counts of the rows (a ``--frames`` string or integers); default: powers
            of two up to the footprint, and the footprint.
        sample_rate: SHARDS sampling rate in (0, 1]; None or 1 is exact.
        reader_options: as for :func:`pfsim.tracedriven.replay.replay`.
    """
    rate = 1.0 if sample_rate is None else float(sample_rate)
    if not 0 < rate <= 1:
        raise ConfigError("--sample-rate", f"expected a rate in (0, 1], got {sample_rate}")
    reader_options = normalize_options(reader_options)
    page_size = reader_options.get("page_size", DEFAULT_PAGE_SIZE)
    counts = None if frames is None else frame_counts(frames, page_size)
    reader = open_trace(trace, **reader_options)
    threshold = np.uint64(int(rate * (1 << SHARDS_BITS)))
    page_ids = PageIds()
    stack = StackDistances()
    ids = np.empty(0, dtype=np.int32)
    requests = 0
    for pages in reader:
        requests += pages.size
        if rate < 1:
            pages = pages[shards_hash(pages) < threshold]
        if ids.size < pages.size:
            ids = np.empty(pages.size, dtype=np.int32)
        stack.feed(page_ids.map(pages, out=ids), page_ids.n_pages)
    sampled = stack.requests
    adjust = rate * requests - sampled if rate < 1 else 0.0
    histogram = stack.histogram[:max(page_ids.n_pages, 1)].astype(np.float64 if rate < 1
                                                                  else np.int64)
    if rate < 1 and histogram.size:
        histogram = _adjusted(histogram, adjust)
    footprint = page_ids.n_pages if rate >= 1 else round(page_ids.n_pages / rate)
    compulsory = stack.compulsory if rate >= 1 else round(stack.compulsory / rate)
    facts = TraceFacts(reader.describe(), requests=requests, distinct_pages=footprint,
                       warnings=list(reader.warnings), first_bad=reader.first_bad)
    curve = MissRatioCurve(requests=requests, footprint=footprint, compulsory_misses=compulsory,
                           page_size=int(page_size), sample_rate=rate, trace=facts,
                           _histogram=histogram, _compulsory_sampled=stack.compulsory,
                           _adjust=adjust if rate < 1 else 0.0, rows=[])
    counts = counts or default_frames(footprint)
    curve.rows = [{"policy": "lru", "frames": int(f), "requests": requests, "faults": int(x),
                   "miss_ratio": int(x) / requests}
                  for f, x in zip(counts, curve.faults(counts), strict=True)]
    return curve


def _adjusted(histogram: np.ndarray, adjust: float) -> np.ndarray:
    """SHARDS_adj: add ``adjust`` (may be negative) to the smallest distances, never below 0."""
    histogram = histogram.copy()
    if adjust >= 0:
        histogram[0] += adjust
        return histogram
    before = np.concatenate([[0.0], np.cumsum(histogram)[:-1]])  # counts below each index
    histogram -= np.clip(-adjust - before, 0.0, histogram)
    return histogram
