"""Access patterns over a range of pages, generated in vectorized chunks.

A :class:`PatternStream` yields page offsets (0 .. npages-1, relative to the range's first
page) and store flags, chunk by chunk, from one named random stream.  The sequence depends on
the seed and on the chunk sizes asked for (numpy's bounded-integer sampling does not carry
state across calls); the executor always asks for the same sizes, so runs are reproducible.

Patterns:
    sequential  byte position ``k * stride`` wrapping at the end of the range
    uniform     each page equally likely
    zipf        page of popularity rank r with probability ~ 1 / r**alpha (bounded Zipf,
                inverse-CDF sampling); ranks are scattered over the range by a fixed permutation
    hotcold     with ``hot_probability`` a page of the hot set (``hot_fraction`` of the range),
                else any page; the hot set moves to the next block every ``phase`` accesses
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pfsim.units import PAGE_SIZE


@lru_cache(maxsize=32)
def _zipf_cdf(npages: int, alpha: float) -> np.ndarray:
    weights = 1.0 / np.power(np.arange(1, npages + 1, dtype=np.float64), alpha)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


class PatternStream:
    """Endless stream of (page offset, is_store) for one access step of one thread.

    Args:
        pattern: "sequential", "uniform", "zipf" or "hotcold".
        npages: pages in the range; ``offset_bytes`` is the range start within its page.
        rng: the thread-step's random generator.
        write_ratio: probability that an access is a store.
    """

    def __init__(self, pattern: str, npages: int, rng: np.random.Generator, write_ratio: float,
                 *, length_bytes: int | None = None, stride: int = 64, alpha: float = 0.99,
                 hot_fraction: float = 0.1, hot_probability: float = 0.9, phase: int = 100_000,
                 offset_bytes: int = 0, trace: np.ndarray | None = None) -> None:
        self.pattern = pattern
        self.npages = npages
        self.rng = rng
        self.write_ratio = write_ratio
        self.length_bytes = length_bytes if length_bytes is not None else npages * PAGE_SIZE
        self.stride = stride
        self.alpha = alpha
        self.hot_pages = max(1, int(round(npages * hot_fraction)))
        self.hot_probability = hot_probability
        self.phase = phase
        self.offset_bytes = offset_bytes
        self.generated = 0
        self._rank_to_page: np.ndarray | None = None
        self._trace = trace  # trace pattern: dense page ids in request order
        if pattern == "trace" and (trace is None or trace.size == 0):
            raise ValueError("the trace pattern needs a non-empty array of page ids")
        if pattern == "zipf":
            self._rank_to_page = rng.permutation(npages).astype(np.int64)

    def next_chunk(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` accesses: (page offsets as int64, stores as bool)."""
        k0 = self.generated
        if self.pattern == "sequential":
            positions = (np.arange(k0, k0 + n, dtype=np.int64) * self.stride) % self.length_bytes
            pages = (positions + self.offset_bytes) // PAGE_SIZE
        elif self.pattern == "trace":
            assert self._trace is not None
            at = np.arange(k0, k0 + n, dtype=np.int64) % self._trace.size
            pages = self._trace[at].astype(np.int64) % self.npages
        elif self.pattern == "uniform":
            pages = self.rng.integers(0, self.npages, size=n, dtype=np.int64)
        elif self.pattern == "zipf":
            cdf = _zipf_cdf(self.npages, float(self.alpha))
            ranks = np.searchsorted(cdf, self.rng.random(n), side="right")
            np.minimum(ranks, self.npages - 1, out=ranks)
            assert self._rank_to_page is not None
            pages = self._rank_to_page[ranks]
        elif self.pattern == "hotcold":
            index = np.arange(k0, k0 + n, dtype=np.int64)
            hot_start = ((index // self.phase) * self.hot_pages) % self.npages
            hot = self.rng.random(n) < self.hot_probability
            pick_hot = (hot_start + self.rng.integers(0, self.hot_pages, size=n)) % self.npages
            pick_any = self.rng.integers(0, self.npages, size=n, dtype=np.int64)
            pages = np.where(hot, pick_hot, pick_any)
        else:  # pragma: no cover - the schema admits only the four names
            raise ValueError(f"unknown pattern {self.pattern!r}")
        if self.write_ratio <= 0.0:
            stores = np.zeros(n, dtype=np.bool_)
        elif self.write_ratio >= 1.0:
            stores = np.ones(n, dtype=np.bool_)
        else:
            stores = self.rng.random(n) < self.write_ratio
        self.generated += n
        return pages, stores
